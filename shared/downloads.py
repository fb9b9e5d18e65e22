"""Downloads behind `shared.data.fetch` (hand-written): the course's files and their sha256, the cache and
mirror folders, pooch's timeout and retries, zip archives, and files written whole or not at all; and the one
way the course fetches model weights from the Hugging Face Hub (`hub_download`).

Chapter 2's lecture shows the idea in `shared/data.py`: look in the cache, otherwise copy the file in,
then check its sha256. Everything here is what makes that reliable on a real network: a mirror folder
for machines without internet, a timeout and retries, one member taken out of a zip archive, files
written whole or not at all, and errors that say which file to put where.
"""

import glob
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests

MIRROR_VARIABLE = "COURSE_DATA_MIRROR"  # a folder holding copies of the files, tried before the network
CACHE_VARIABLE = "COURSE_DATA_DIR"  # where verified files are kept (default: the OS's cache folder)


@dataclass(frozen=True)
class Remote:
    """Where a file of the course lives, and the sha256 of the exact bytes the course reads."""

    url: str
    sha256: str
    member: str | None = None  # set when the URL is a zip archive and the file is one member of it


DATASETS = {
    "the-verdict.txt": Remote(
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt",
        "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
    ),
    "SMSSpamCollection": Remote(
        "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
        "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
        member="SMSSpamCollection",
    ),
    "instruction-data.json": Remote(
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json",
        "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
    ),
    # Tiny Shakespeare (chapter 5's pretraining companion): about 40,000 lines of the plays, from char-rnn.
    "tinyshakespeare.txt": Remote(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
    # Preference pairs (chapter 7's DPO companion): the 1,100 instructions of instruction-data.json, each with
    # a "chosen" (polite) and a "rejected" (impolite) response. The URL names a commit, so the bytes stay fixed.
    "instruction-data-with-preference.json": Remote(
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/99af403b9f64dd0f820173402f5a56af41263536/"
        "ch07/04_preference-tuning-with-dpo/instruction-data-with-preference.json",
        "305315abf14f65fa42c01a0877572f832606571c2a7d49f152ac1d758b16756e",
    ),
    # GPT-2's tokenizer as OpenAI published it (chapter 2's BPE companion reads them into its own encoder).
    "encoder.json": Remote(
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
    "vocab.bpe": Remote(
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
}


class DataUnavailableError(RuntimeError):
    """A course file could not be obtained or failed verification; the message says what to do."""


def remote_for(name: str) -> Remote:
    """The Remote of one course file; an unknown name is refused with the list of known ones."""
    if name not in DATASETS:
        raise KeyError(f"unknown course file {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def cache_dir() -> Path:
    """The folder of verified copies: $COURSE_DATA_DIR, else the operating system's cache folder."""
    return Path(os.environ.get(CACHE_VARIABLE) or pooch.os_cache("llm-course"))


def partial_path(target: Path) -> Path:
    """Where write_atomically puts a file while it is being written: `.<name>.part`, beside `target`."""
    return target.with_name(f".{target.name}.part")


def previous_path(target: Path) -> Path:
    """Where write_atomically(..., keep_previous=True) keeps the file it replaced: `<name>.prev`."""
    return target.with_name(f"{target.name}.prev")


def write_atomically(target: Path, *chunks: bytes, keep_previous: bool = False) -> None:
    """Write `chunks` to a temporary file beside `target`, then rename it: readers never see half a file.

    The course's one way to write a file that must never be left half-written (downloads here, checkpoints
    in chapter 5). The bytes reach the disk before the rename, so a crash cannot leave an empty file behind.
    The temporary file always has the same name, so a process killed while writing leaves at most one, and
    the next write to the same target removes it. With keep_previous, the file being replaced is kept as
    `<name>.prev` (one generation): a checkpoint whose newest save is lost still has the one before it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*part"):  # left by a write that was killed
        stale.unlink(missing_ok=True)
    partial = partial_path(target)
    try:
        with open(partial, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and target.exists():
            os.replace(target, previous_path(target))
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def extract_member(archive: Path, member: str, target: Path) -> None:
    """Copy one named member out of a zip file to `target`.

    Only the member we asked for is read, and it is written to a path we chose, so a hostile
    archive cannot place files outside the cache (no '../' or absolute member names are used).
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            if member not in names:
                raise DataUnavailableError(f"{archive.name} has no member {member!r} (it holds {names[:5]}...)")
            data = zf.read(member)
    except zipfile.BadZipFile as error:
        archive.unlink(missing_ok=True)
        raise DataUnavailableError(f"{archive.name} is not a valid zip file ({error}); it was deleted, run again to re-download") from None
    write_atomically(target, data)


def copy_into_cache(name: str, remote: Remote, target: Path) -> str:
    """Put a copy of course file `name` at `target`, unverified, and say where it came from.

    The folder named by COURSE_DATA_MIRROR is tried first; otherwise the file is downloaded from its URL
    with a timeout, three retries and a progress bar (a zip archive is downloaded whole and its member
    taken out). Returns the origin, for the message of a failed check: "the mirror ..." or the URL.
    """
    mirror = os.environ.get(MIRROR_VARIABLE)
    if mirror and (Path(mirror) / name).is_file():
        write_atomically(target, (Path(mirror) / name).read_bytes())
        return f"the mirror {MIRROR_VARIABLE}"
    download_name = Path(remote.url).name if remote.member else name
    known_hash = None if remote.member else f"sha256:{remote.sha256}"  # a zip is checked by its member
    downloads = pooch.create(
        path=target.parent, base_url="", registry={download_name: known_hash},
        urls={download_name: remote.url}, retry_if_failed=3,
    )
    try:
        downloaded = Path(downloads.fetch(download_name, downloader=pooch.HTTPDownloader(timeout=30, progressbar=True)))
    except (requests.RequestException, OSError, ValueError) as error:
        raise DataUnavailableError(
            f"Could not download {name} from {remote.url}\n  ({type(error).__name__}: {error}).\n"
            f"Without internet: fetch that file on a machine that has it, then either put it at\n  {target}\n"
            f"or put it in a folder and set the environment variable {MIRROR_VARIABLE} to that folder."
        ) from None  # the message names the cause; the network library's long chain would bury it
    if remote.member:
        extract_member(downloaded, remote.member, target)
    elif downloaded != target:
        write_atomically(target, downloaded.read_bytes())
    return remote.url


def refuse_copy(path: Path, remote: Remote, origin: str, actual: str) -> None:
    """Delete a copy whose sha256 is wrong, and raise the error that says so and what to do."""
    path.unlink(missing_ok=True)
    raise DataUnavailableError(
        f"{path.name} from {origin} has sha256 {actual}, expected {remote.sha256}: the file is corrupt or a "
        "different version. The bad copy in the cache was deleted; run again to fetch it afresh."
    )


class HubDownloadError(RuntimeError):
    """Weights or files could not be downloaded from the Hugging Face Hub (offline, gated, not found)."""


def hub_download(repo_id, filename=None, *, allow_patterns=None, cache_dir=None, force_download=False, what=None,
                 alternative=""):
    """The local path of `filename` from the Hub repository `repo_id` or, without a filename, of a folder holding
    the repository's files that match `allow_patterns`.

    huggingface_hub does the work: its cache (a second call costs nothing), a progress bar, a partial download
    kept apart until it is complete, and the files' checksums. Any failure becomes one HubDownloadError that says
    what to do: accept the license of a gated model, or get online once; `what` names the download in that
    message (default: the repository) and `alternative` adds another way to get the files.
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        if filename is None:
            return Path(snapshot_download(repo_id, allow_patterns=allow_patterns, cache_dir=cache_dir,
                                          force_download=force_download))
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir, force_download=force_download))
    except Exception as error:  # offline, gated, missing, server trouble: the advice depends on which
        gated = "gated" in type(error).__name__.lower() or "401" in str(error) or "403" in str(error)
        advice = (f"{repo_id} is gated: accept its license on https://huggingface.co/{repo_id} and log in with "
                  "`hf auth login` (or set HF_TOKEN)." if gated else
                  "This needs an internet connection (and HF_HUB_OFFLINE unset) the first time; afterwards the "
                  "cached copy is used.")
        raise HubDownloadError(f"could not download {what or repo_id}: {type(error).__name__}. {advice}"
                               f"{' ' + alternative if alternative else ''}") from None  # the Hub's chain would bury it
