"""shared/evaluation.py: automatic metrics, multiple-choice scoring and the Ollama judge client (chapter 7)."""

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torch import nn

from shared.evaluation import (
    JUDGE_MODEL, JudgeError, JudgeResponseError, JudgeTimeoutError, JudgeUnavailableError,
    automatic_scores, check_judge, evaluate_multiple_choice, exact_match, format_multiple_choice, judge_prompt,
    judge_score, lcs_length, list_ollama_models, load_multiple_choice_questions, multiple_choice_prompt,
    normalize_text, ollama_chat_payload, parse_score, query_ollama, rouge_l, score_multiple_choice, token_f1,
)

ROOT = Path(__file__).resolve().parent.parent


# ---- automatic metrics ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("The  Answer is: Paris!", "answer is paris"),
    ("An apple, a day.", "apple day"),
    ("  théâtre  ", "théâtre"),
    ("Then there", "then there"),  # only whole words are articles
    ("", ""),
])
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


def test_exact_match_after_normalisation():
    assert exact_match("Paris.", "paris") == 1.0
    assert exact_match("The capital is Paris", "capital is Paris!") == 1.0
    assert exact_match("Paris is the capital", "The capital is Paris") == 0.0


@pytest.mark.parametrize("prediction, reference, f1", [
    ("The capital of France is Paris.", "Paris is the capital of France.", 1.0),
    ("45 kilometers is 45000 meters.", "45000", 1 / 3),  # P = 1/5, R = 1: F1 = 2 * 0.2 / 1.2
    ("cat cat dog", "cat dog dog", 2 / 3),  # shared: one cat, one dog
    ("I don't know", "Paris", 0.0),
    ("", "", 1.0),
    ("", "Paris", 0.0),
    ("Paris", "", 0.0),
])
def test_token_f1(prediction, reference, f1):
    assert token_f1(prediction, reference) == pytest.approx(f1)


@pytest.mark.parametrize("a, b, length", [
    ("ABCBDAB", "BDCABA", 4),  # the textbook example: BCBA
    ("abc", "abc", 3),
    ("abc", "", 0),
    ("abc", "xyz", 0),
    ("a b c d e".split(), "b x d e".split(), 3),
])
def test_lcs_length(a, b, length):
    assert lcs_length(a, b) == length == lcs_length(b, a)


@pytest.mark.parametrize("prediction, reference, score", [
    ("The capital of France is Paris.", "Paris is the capital of France.", 0.6),  # LCS "capital of france": 3 of 5
    ("the cat sat on the mat", "cat sat on mat", 1.0),
    ("w x y z", "w y", 2 / 3),  # LCS 2: P = 2/4, R = 2/2
    ("", "", 1.0),
    ("x", "", 0.0),
])
def test_rouge_l(prediction, reference, score):
    assert rouge_l(prediction, reference) == pytest.approx(score)


def test_automatic_scores_are_mean_percentages():
    scores = automatic_scores(["Paris.", "I don't know"], ["paris", "45000"])
    assert scores == pytest.approx({"exact_match": 50.0, "token_f1": 50.0, "rouge_l": 50.0})
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        automatic_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no predictions"):
        automatic_scores([], [])


# ---- parsing the judge's score -------------------------------------------------------------------------------

@pytest.mark.parametrize("reply, score", [
    ("85", 85), (" 85.\n", 85), ("0", 0), ("100", 100), ("72.6", 73), ("Score: 72", 72), ("score = 40.", 40),
    ("I would rate it 90/100 because it is correct.", 90), ("90 out of 100", 90), ("around 40", 40),
    ("The score is 55, since the answer is partly right.", 55), ("85\n\nIt matches the reference (2 + 2 = 4).", 85),
])
def test_parse_score_accepts_the_usual_phrasings(reply, score):
    assert parse_score(reply) == score


@pytest.mark.parametrize("reply", ["good answer", "", "between 60 and 70", "150", "-5", "101/100", "NaN", "score: high"])
def test_parse_score_rejects_non_numbers_ambiguity_and_out_of_range(reply):
    with pytest.raises(JudgeResponseError):
        parse_score(reply)


def test_judge_prompt_contains_the_three_texts_and_the_scale():
    prompt = judge_prompt("Name a color.", "Blue.", "Red.")
    for part in ("Name a color.", "Blue.", "Red.", "0 to 100", "number only"):
        assert part in prompt


# ---- the judge client against a local HTTP server ---------------------------------------------------------

class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the client hung up on a slow answer; nothing to report


@contextlib.contextmanager
def fake_ollama(chat=(200, {"message": {"role": "assistant", "content": "85"}}), tags=None, delay=0.0):
    """An HTTP server on 127.0.0.1 (a free port) speaking Ollama's /api/chat and /api/tags; yields (url, requests)."""
    received = []
    tags = tags or (200, {"models": [{"name": "llama3:latest"}, {"name": "mistral:7b"}]})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            received.append(("GET", self.path, None))
            self.reply(*tags) if self.path == "/api/tags" else self.reply(404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(("POST", self.path, body))
            time.sleep(delay)
            self.reply(*chat) if self.path == "/api/chat" else self.reply(404, {"error": "not found"})

    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_query_sends_ollamas_chat_format_and_returns_the_content():
    with fake_ollama() as (url, received):
        assert query_ollama("How good?", model="llama3", url=url, timeout=5) == "85"
    method, path, body = received[0]
    assert (method, path) == ("POST", "/api/chat")
    assert body == ollama_chat_payload("How good?", "llama3")
    assert body["stream"] is False and body["messages"] == [{"role": "user", "content": "How good?"}]
    assert body["options"] == {"seed": 123, "temperature": 0.0, "num_ctx": 2048}


def test_judge_score_parses_the_reply():
    with fake_ollama(chat=(200, {"message": {"content": "Score: 70/100"}})) as (url, received):
        assert judge_score("Name a color.", "Blue.", "Blue!", url=url, timeout=5) == 70
    assert "Blue!" in received[0][2]["messages"][0]["content"]


def test_a_refused_connection_says_how_to_start_ollama():
    url = closed_port_url()
    with pytest.raises(JudgeUnavailableError) as error:
        query_ollama("x", url=url, timeout=2)
    message = str(error.value)
    assert url in message and "ollama serve" in message and f"ollama pull {JUDGE_MODEL}" in message
    assert "https://ollama.com" in message
    with pytest.raises(JudgeUnavailableError):
        check_judge(url=url, timeout=2)


def test_a_slow_server_times_out_with_a_clear_error():
    with fake_ollama(delay=1.0) as (url, _):
        start = time.perf_counter()
        with pytest.raises(JudgeTimeoutError, match="did not answer within 0.2 s"):
            query_ollama("x", url=url, timeout=0.2)
        assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("chat, error_type, message", [
    ((200, b"{not json"), JudgeResponseError, "malformed JSON"),
    ((200, b""), JudgeResponseError, "malformed JSON"),
    ((200, {"done": True}), JudgeResponseError, "without message.content"),
    ((200, {"message": {"content": 85}}), JudgeResponseError, "without message.content"),
    ((200, [1, 2]), JudgeResponseError, "without message.content"),
    ((500, {"error": "out of memory"}), JudgeResponseError, "HTTP 500: out of memory"),
    ((500, b"plain failure"), JudgeResponseError, "HTTP 500: plain failure"),
    ((404, {"error": "model 'llama3' not found, try pulling it first"}), JudgeUnavailableError, "ollama pull llama3"),
])
def test_bad_answers_raise_judge_errors(chat, error_type, message):
    with fake_ollama(chat=chat) as (url, _):
        with pytest.raises(error_type, match=message):
            query_ollama("x", url=url, timeout=5)


def test_a_reply_without_a_score_is_an_error():
    with fake_ollama(chat=(200, {"message": {"content": "A fine answer."}})) as (url, _):
        with pytest.raises(JudgeResponseError, match="could not find one score"):
            judge_score("task", "reference", "response", url=url, timeout=5)


def test_all_judge_errors_share_a_base_class():
    for cls in (JudgeUnavailableError, JudgeTimeoutError, JudgeResponseError):
        assert issubclass(cls, JudgeError)


def test_check_judge_finds_pulled_models_with_or_without_a_tag():
    with fake_ollama() as (url, received):
        assert list_ollama_models(url) == ["llama3:latest", "mistral:7b"]
        check_judge("llama3", url=url)
        check_judge("llama3:latest", url=url)
        check_judge("mistral:7b", url=url)
        with pytest.raises(JudgeUnavailableError, match="ollama pull phi3"):
            check_judge("phi3", url=url)
        with pytest.raises(JudgeUnavailableError, match="ollama pull mistral"):
            check_judge("mistral", url=url)  # only the 7b tag is there, not :latest
    assert all(r[:2] == ("GET", "/api/tags") for r in received)


@pytest.mark.parametrize("tags", [(200, b"<html>"), (200, {"models": "none"}), (503, {"error": "starting"})])
def test_check_judge_with_a_strange_server(tags):
    with fake_ollama(tags=tags) as (url, _):
        with pytest.raises(JudgeResponseError):
            check_judge(url=url)


# ---- multiple choice -------------------------------------------------------------------------------------------

def test_multiple_choice_prompt_layout():
    block = format_multiple_choice("2 + 2?", ["3", "4"], answer="B")
    assert block == "2 + 2?\nA. 3\nB. 4\nAnswer: B"
    prompt = multiple_choice_prompt("Sky color?", ["green", "blue"], [{"question": "2 + 2?", "choices": ["3", "4"],
                                                                       "answer": "B"}], subject="tests")
    assert prompt == ("The following are multiple choice questions (with answers) about tests.\n\n"
                      "2 + 2?\nA. 3\nB. 4\nAnswer: B\n\n"
                      "Sky color?\nA. green\nB. blue\nAnswer:")
    with pytest.raises(ValueError, match="2 to"):
        format_multiple_choice("?", ["only one"])


class LetterTokenizer:
    """" A", " B", ... are tokens 0, 1, ...; every other text is one token per character, ids 10 and up."""

    def encode(self, text):
        if len(text) == 2 and text[0] == " " and text[1] in "ABCDEFGHIJ":
            return ["ABCDEFGHIJ".index(text[1])]
        return [10 + ord(c) % 40 for c in text]


class FixedLogits(nn.Module):
    """A 'model' whose next-token logits are always the same vector, whatever the prompt."""

    def __init__(self, last_logits, context_length=None):
        super().__init__()
        self.register_buffer("last_logits", torch.as_tensor(last_logits, dtype=torch.float32))
        if context_length is not None:
            self.cfg = type("Cfg", (), {"context_length": context_length})()
        self.calls = []

    def forward(self, idx):
        self.calls.append((idx.shape, self.training))
        logits = torch.zeros(idx.shape[0], idx.shape[1], self.last_logits.numel())
        logits[:, -1] = self.last_logits
        return logits


def test_score_multiple_choice_picks_the_letter_with_the_highest_probability():
    logits = torch.zeros(50)
    logits[:4] = torch.tensor([0.5, 1.0, 3.0, 2.0])  # C is the most likely letter
    logits[20] = 10.0  # a non-letter token is the most likely token overall: it must not matter
    model = FixedLogits(logits).train()
    result = score_multiple_choice(model, LetterTokenizer(), "Which?", ["w", "x", "y", "z"])
    assert result.prediction == "C"
    expected = torch.softmax(torch.tensor([0.5, 1.0, 3.0, 2.0]), dim=0).tolist()
    assert list(result.probabilities) == ["A", "B", "C", "D"]
    assert list(result.probabilities.values()) == pytest.approx(expected)
    assert result.letter_mass == pytest.approx(torch.softmax(logits, dim=0)[:4].sum().item())
    assert model.calls[0][1] is False and model.training, "scored in eval mode, then the mode is restored"


def test_score_multiple_choice_with_two_or_five_choices():
    logits = torch.tensor([0.0, 1.0, 0.0, 0.0, 5.0] + [0.0] * 45)
    assert score_multiple_choice(FixedLogits(logits), LetterTokenizer(), "?", ["a", "b"]).prediction == "B"
    assert score_multiple_choice(FixedLogits(logits), LetterTokenizer(), "?", list("abcde")).prediction == "E"


def test_evaluate_multiple_choice_accuracy_with_a_model_that_always_says_d():
    logits = torch.zeros(50)
    logits[3] = 5.0
    questions = [{"question": f"q{i}", "choices": list("wxyz"), "answer": answer} for i, answer in enumerate("DDAB")]
    few_shot = [{"question": "example", "choices": list("wxyz"), "answer": "A"}]
    model = FixedLogits(logits)
    accuracy, results = evaluate_multiple_choice(model, LetterTokenizer(), questions, few_shot)
    assert accuracy == 50.0 and [r.prediction for r in results] == ["D"] * 4
    assert len(model.calls) == 4
    with pytest.raises(ValueError, match="no questions"):
        evaluate_multiple_choice(model, LetterTokenizer(), [])


def test_score_multiple_choice_refuses_prompts_longer_than_the_context():
    model = FixedLogits(torch.zeros(50), context_length=8)
    with pytest.raises(ValueError, match="context is 8"):
        score_multiple_choice(model, LetterTokenizer(), "a long question", ["x", "y"])


def test_score_multiple_choice_needs_one_token_per_letter():
    class SplitsLetters(LetterTokenizer):
        def encode(self, text):
            return [1, 2] if text == " B" else super().encode(text)

    with pytest.raises(ValueError, match="into 2 tokens"):
        score_multiple_choice(FixedLogits(torch.zeros(50)), SplitsLetters(), "?", ["x", "y"])


def test_score_multiple_choice_with_gpt2s_tokenizer_and_a_real_model(tiny_model):
    from shared.text import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    assert [len(tokenizer.encode(" " + letter)) for letter in "ABCD"] == [1, 1, 1, 1]
    # GPT-2's vocabulary and dropout; a context long enough for the question and its four choices.
    model = tiny_model(vocab_size=50257, context_length=256, emb_dim=16, n_layers=1, drop_rate=0.1)
    result = score_multiple_choice(model, tokenizer, "What is 2 + 2?", ["3", "4", "5", "22"])
    assert result.prediction in "ABCD" and sum(result.probabilities.values()) == pytest.approx(1.0)
    assert 0 < result.letter_mass < 1


def test_the_question_file_loads_from_the_package():
    data = load_multiple_choice_questions()
    assert set(data) == {"description", "subject", "few_shot_examples", "questions"}
    assert isinstance(data["subject"], str) and data["subject"]


def test_a_missing_question_file_says_what_to_do(monkeypatch):
    monkeypatch.setattr("shared.evaluation.MULTIPLE_CHOICE_RESOURCE", "assets/no_such_file.json")
    with pytest.raises(FileNotFoundError, match="no_such_file.json.*reinstall"):
        load_multiple_choice_questions()


def test_the_chapters_question_file_is_well_formed_and_balanced():
    data = load_multiple_choice_questions()
    questions, few_shot = data["questions"], data["few_shot_examples"]
    assert 20 <= len(questions) <= 30 and len(few_shot) == 3
    for q in questions + few_shot:
        assert set(q) == {"question", "choices", "answer"}
        assert len(q["choices"]) == 4 and len(set(q["choices"])) == 4 and q["answer"] in "ABCD"
    counts = Counter(q["answer"] for q in questions)
    assert set(counts) == set("ABCD") and len(set(counts.values())) == 1, counts
    texts = [q["question"] for q in questions + few_shot]
    assert len(set(texts)) == len(texts), "no question is repeated, and no worked example is a test question"
