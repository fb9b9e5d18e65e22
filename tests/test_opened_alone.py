"""The suite runs every notebook opened alone (see conftest.py): prove the harness does what it says."""

import nbval.plugin

from shared._export import ROOT


def test_notebook_kernels_start_in_an_empty_folder_with_the_installed_package(installed_course_package):
    kernel = nbval.plugin.RunningKernel("python3", cwd=str(ROOT / "ch02_text_data"))
    try:
        kernel.execute_cell_input(
            "import os, shared\nprint(os.listdir('.'))\nprint(shared.__file__)\nprint(os.path.isdir('../shared'))",
            allow_stdin=False,
        )
        printed = ""
        while True:
            message = kernel.get_message("iopub", timeout=30)
            if message["msg_type"] == "stream":
                printed += message["content"]["text"]
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
    finally:
        kernel.stop()
    folder_listing, package_file, clone_visible = printed.splitlines()
    assert folder_listing == "[]", "the notebook's folder must be empty: nothing beside it on Colab either"
    assert package_file.startswith(str(installed_course_package)), f"imported {package_file}, not the installed package"
    assert clone_visible == "False"
