"""Prediction CLI and the model server (127.0.0.1 only), with a bounded load from a client."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from conftest import REPO, InProcess
from lepton_jax import Dataset, Model, Trainer
from lepton_jax.errors import UserError

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = np.where(x.sum(axis=1) > 0, 1, 0)
    header = "a,b,c,label"
    np.savetxt(root / "train.csv", np.column_stack([x, y]), delimiter=",", header=header,
               comments="", fmt="%.5f")
    model = Model.logistic_regression()
    trainer = Trainer(model, Dataset.load_csv(root / "train.csv"), workdir=root / "run",
                      progress="off")
    trainer.train(epochs=5)
    model.save(root / "model.bin")
    return root, model, x


def _cli(*args, env=None):
    full = {**os.environ, **(env or {})}
    full.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "lepton_jax.cli", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=300)


def test_predict_cli_from_model_file_and_run_dir(trained):
    root, model, x = trained
    for source in (root / "model.bin", root / "run"):
        out = root / f"pred_{source.name}.csv"
        proc = _cli("predict", str(source), str(root / "train.csv"), "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        predicted = np.loadtxt(out, skiprows=1)
        np.testing.assert_array_equal(predicted, model.predict(x))
    # `-` reads the rows from stdin and the predictions go to stdout.
    full = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    piped = subprocess.run([sys.executable, "-m", "lepton_jax.cli", "predict",
                            str(root / "model.bin"), "-"], cwd=REPO, env=full, text=True,
                           input=(root / "train.csv").read_text(), capture_output=True,
                           timeout=300)
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[0] == "prediction"
    np.testing.assert_array_equal(np.array(lines[1:], float), model.predict(x))
    # A reader that stops early (`| head -1`) ends the command quietly, exit 0.
    head = subprocess.run(f"{sys.executable} -m lepton_jax.cli predict {root / 'model.bin'} "
                          f"{root / 'train.csv'} | head -1", shell=True, cwd=REPO, env=full,
                          text=True, capture_output=True, timeout=300)
    assert head.stdout == "prediction\n" and "Traceback" not in head.stderr, head.stderr


def test_predict_from_an_unfinished_run_says_which_checkpoint_it_uses(trained, tmp_path):
    root, model, x = trained
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "result.json").unlink()  # as a run stopped with Ctrl-C, killed or still training
    steps = json.loads((root / "run" / "result.json").read_text())["steps"]
    proc = _cli("predict", str(run), str(root / "train.csv"))
    assert proc.returncode == 0, proc.stderr
    assert (f"note: {run} has not finished training (step {steps} of {steps}); using its "
            f"checkpoint at step {steps}\n") in proc.stderr
    assert "note" not in _cli("predict", str(root / "run"), str(root / "train.csv")).stderr


@pytest.mark.parametrize("text,message", [
    # A header naming some of the features cannot be paired with them (before, its columns
    # were taken in order): the missing ones are named.
    ("a,b\n1,2\n", "input CSV '{bad}' lacks column(s) ['c']; expected a, b, c"),
    ("c,a,x\n1,2,3\n", "input CSV '{bad}' lacks column(s) ['b']; expected a, b, c"),
    ("x,y\n1,2\n", "input CSV '{bad}' has 2 columns; this model takes 3 features per row"),
    # A file meant for another model: its width is named before any cell of words in it.
    ("p,q,r,s\n1,2,cat,4\n", "has 4 columns; this model takes 3 features per row"),
    ("a,b,c\n1,zz,3\n", "non-numeric value 'zz' at row 2, column 'b'"),
    ("", "is empty"),
    ("a,b,c\n1,2,3\n4,inf,6\n", "infinite value 'inf' at row 3, column 'b'"),
])
def test_predict_cli_bad_input(trained, text, message):
    root, _, _ = trained
    bad = root / "bad.csv"
    bad.write_text(text)
    proc = _cli("predict", str(root / "model.bin"), str(bad))
    assert proc.returncode == 2
    message = message.format(bad=bad)
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_server_answers_validates_and_serves_load(trained):
    root, model, x = trained
    port = _free_port()
    log = open(root / "server.log", "w")
    env = {**os.environ, "LEPTON_JAX_TOKEN": TOKEN}
    env.pop("XLA_FLAGS", None)
    server = subprocess.Popen([sys.executable, "-m", "lepton_jax.cli", "serve",
                               str(root / "model.bin"), "--port", str(port)], cwd=REPO, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", headers=auth, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline and server.poll() is None, \
                (root / "server.log").read_text()
            time.sleep(0.2)
        with httpx.Client(base_url=url, headers=auth, trust_env=False) as c:
            r = c.post("/predict", json={"rows": x[:5].tolist()})
            assert r.status_code == 200
            assert r.json()["predictions"] == model.predict(x[:5]).tolist()
            for body in ({"rows": [[1.0, 2.0]]}, {"rows": []}, {"rows": [["a", 1, 2]]},
                         {"wrong": 1}, [1, 2, 3]):
                bad = c.post("/predict", json=body)
                assert 400 <= bad.status_code < 500, body
                assert "detail" in bad.json()
            assert c.post("/predict", content=b"{not json",
                          headers={"content-type": "application/json"}).status_code == 422
            nan = c.post("/predict", content=b'{"rows": [[1.0, NaN, 2.0]]}',
                         headers={"content-type": "application/json"})
            assert nan.status_code == 422
            assert nan.json()["detail"].startswith("predict input: NaN at row 0, column 'b'")
            assert c.get("/health").status_code == 200  # still serving
        with httpx.Client(base_url=url, trust_env=False) as anonymous:
            assert anonymous.post("/predict", json={"rows": x[:1].tolist()}).status_code == 401
            assert anonymous.get("/health", headers={"Authorization": "Bearer nope"}).status_code \
                == 401
        load = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_serve.py"), "--url",
                               url, "--n", "2000", "--token", TOKEN], capture_output=True,
                              text=True, timeout=600)
        assert load.returncode == 0, load.stderr
        stats = json.loads(load.stdout.strip().splitlines()[-1])
        assert stats["requests"] == 2000 and stats["errors"] == 0
        server.send_signal(signal.SIGINT)  # Ctrl-C: the way a server is stopped
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
        log.close()
    logged = (root / "server.log").read_text()
    assert logged.endswith("stopped serving\n") and "Traceback" not in logged, logged
    assert TOKEN not in logged
    for f in root.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f


def test_serve_on_a_taken_port_is_one_clear_error(trained, capsys):
    """The port is bound before the server announces itself: a taken one is one message
    naming it and the fix, exit 2, no 'serving ...' line and no uvicorn traceback."""
    root, _, _ = trained
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _cli("serve", str(root / "model.bin"), "--port", str(port))
    assert proc.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "pick another port with --port" in proc.stderr
    assert "serving" not in proc.stdout and "Traceback" not in proc.stderr
    # A port beyond 65535 had ended in bind()'s OverflowError traceback.
    from lepton_jax.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["serve", str(root / "model.bin"), "--port", "99999"])
    assert stop.value.code == 2
    assert "argument --port: 99999 is not a port: use 1 to 65535" in capsys.readouterr().err


def test_rows_may_name_their_columns_and_categories(tmp_path):
    """A tabular model's rows may come as objects of its columns by name, in any order, a
    categorical column by its category ("Paris"): before, only lists of the encoded
    numbers were taken, which a client of a model with categories cannot know. Bad rows
    are 422s naming the problem; an image model's features have no names."""
    import pandas as pd

    from lepton_jax.serve import create_app

    rng = np.random.default_rng(0)
    city = rng.choice(["Paris", "Lyon", "Nice"], size=300)
    size = rng.uniform(20, 120, size=300)
    price = size * 5_000 + np.select([city == "Paris", city == "Lyon"], [1e5, 3e4], 0)
    pd.DataFrame({"city": city, "size": size, "price": price}).to_csv(tmp_path / "c.csv",
                                                                      index=False)
    model = Model.linear_regression()
    Trainer(model, Dataset.load_csv(tmp_path / "c.csv", categorical=["city"]),
            workdir=tmp_path / "run", progress="off").train(epochs=5)
    client = InProcess(create_app(model))
    assert client.get("/health").json()["columns"] == ["city", "size"]
    answer = client.post("/predict", json={"rows": [{"city": "Paris", "size": 50},
                                                    {"size": 80.5, "city": "Nice"}]})
    assert answer.status_code == 200, answer.text
    expected = model.predict(pd.DataFrame({"city": ["Paris", "Nice"], "size": [50, 80.5]}))
    assert answer.json()["predictions"] == expected.tolist()
    for rows, detail in (
            ([{"city": "Rome", "size": 50}], "column 'city': unknown category ['Rome']"),
            ([{"size": 50}], "input 'rows' lacks column(s) ['city']; expected city, size"),
            ([{"City": "Nice", "size": 50, "id": 7}],
             "input 'rows' lacks column(s) ['city'] (it has 'City' for 'city': misspelt?); "
             "expected city, size"),
            ([{"city": "Nice", "size": 1}, {"city": "Nice", "size": "big"}],
             "input 'rows' has a non-numeric value 'big' at row 1, column 'size'"),
            ([{"city": "Nice", "size": 1}, [1, 0, 0, 50]], "rows mix lists and objects")):
        bad = client.post("/predict", json={"rows": rows})
        assert bad.status_code == 422 and detail in bad.json()["detail"], bad.text
    # A body the request model refuses: one sentence naming the problem, as above, not
    # pydantic's list of errors (curl -d, which sends form encoding, got "Input should be a
    # valid dictionary or object to extract fields from").
    example = 'e.g. {"rows": [[0.1, 2.0, 3.5]]}'
    for body, status, detail in (
            ('{"rows": [[1, 2]]}', 415, "the body must be JSON, sent with the header "
             "content-type: application/json (curl: -H 'content-type: application/json')"),
            ("{not json", 422, "the body is not valid JSON (Expecting property name enclosed "
             f"in double quotes); send {example}"),
            ("[1, 2]", 422, f"the body must be a JSON object with rows, {example}"),
            ('{"row": [[1, 2]]}', 422, f"the body has no rows; send {example}"),
            ('{"rows": [[1, 2]], "probabilites": true}', 422, "the body's field "
             "'probabilites' is not known; it takes rows (and probabilities: true"),
            ('{"rows": [[1, 2]], "probabilities": "maybe"}', 422,
             'probabilities is "maybe"; send true or false'),
            ('{"rows": "abc"}', 422, "rows must be a list of rows, each a list of numbers or "
             "an object of columns by name"),
            ('{"rows": [[1, 2], [3, null]]}', 422, "rows[1][1] is null; a list row holds "
             "numbers"),
            ('{"rows": [[1, true]]}', 422, "rows[0][1] is true; a list row holds numbers"),
            ('{"rows": [["2", 1]]}', 422, 'rows[0][0] is "2"; a list row holds numbers'),
            ('{"rows": [{"city": ["Nice"], "size": 1}]}', 422, 'rows[0]["city"] is ["Nice"]; '
             "a column's value is a number, or a category's name"),
            ('{"rows": ["abc"]}', 422, 'rows[0] is "abc"; a row is a list of numbers or an '
             "object of columns by name")):
        json_type = {"content-type": "application/json" if status != 415 else
                     "application/x-www-form-urlencoded"}
        bad = client.post("/predict", content=body.encode(), headers=json_type)
        assert bad.status_code == status and bad.json()["detail"].startswith(detail), bad.text
    image = Model.mlp(hidden=[8])
    Trainer(image, Dataset.digits(), workdir=tmp_path / "digits", progress="off").train(epochs=1)
    refused = InProcess(create_app(image)).post("/predict", json={"rows": [{"a": 1.0}]})
    assert refused.status_code == 422
    assert refused.json()["detail"] == ("this model's features have no names; send each row as "
                                        "a list of 784 numbers")


def test_class_probabilities_from_python_the_cli_and_the_server(trained, tmp_path):
    """`predict_proba`, `predict --proba` and `"probabilities": true` give each class's
    probability: rows sum to 1, the most probable class is the prediction, and scikit-learn's
    log-loss of them over the run's test split is the test loss the run reported. A
    regression model has none, which each of the three says."""
    from sklearn.metrics import log_loss

    from lepton_jax.serve import create_app

    root, model, x = trained
    test = Dataset.load_csv(root / "train.csv").splits(normalized=False)
    proba = model.predict_proba(test.x_test)
    assert model.classes == [0, 1] and proba.shape == (len(test.x_test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(model.classes)[proba.argmax(axis=1)],
                                  model.predict(test.x_test))
    reported = json.loads((root / "run" / "result.json").read_text())["test"]["loss"]
    assert log_loss(test.y_test, proba, labels=model.classes) == pytest.approx(reported,
                                                                             rel=1e-6)

    out = tmp_path / "proba.csv"
    proc = _cli("predict", str(root / "model.bin"), str(root / "train.csv"), "--out", str(out),
                "--proba")
    assert proc.returncode == 0, proc.stderr
    import pandas as pd

    table = pd.read_csv(out)
    rows = pd.read_csv(root / "train.csv")[["a", "b", "c"]]  # as the CSV rounded them
    assert list(table.columns) == ["prediction", "p_0", "p_1"]
    np.testing.assert_array_equal(table["prediction"], model.predict(rows))
    # Written at float32's precision, the outputs' (float64 had written 17 digits).
    np.testing.assert_allclose(table[["p_0", "p_1"]], model.predict_proba(rows), rtol=1e-7)
    written = [v for v in out.read_text().replace("\n", ",").split(",") if "." in v]
    assert max(len(v.split("e")[0].replace(".", "").lstrip("0")) for v in written) <= 9

    client = InProcess(create_app(model))
    assert client.get("/health").json()["classes"] == [0, 1]
    answer = client.post("/predict", json={"rows": x[:3].tolist(), "probabilities": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["classes"] == [0, 1]
    assert body["predictions"] == model.predict(x[:3]).tolist()
    np.testing.assert_allclose(body["probabilities"], model.predict_proba(x[:3]), rtol=1e-12)
    assert set(client.post("/predict", json={"rows": x[:1].tolist()}).json()) == {"predictions"}

    regression = Model.linear_regression()
    Trainer(regression, Dataset.from_arrays(x, x.sum(axis=1)), workdir=tmp_path / "reg",
            progress="off").train(epochs=1)
    with pytest.raises(UserError, match="predict_proba is for classifiers; this model does "
                       "regression, use predict"):
        regression.predict_proba(x)
    regression.save(tmp_path / "reg.bin")
    proc = _cli("predict", str(tmp_path / "reg.bin"), str(root / "train.csv"), "--proba")
    assert proc.returncode == 2 and "--proba: " in proc.stderr and "regression model" in \
        proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    refused = InProcess(create_app(regression)).post(
        "/predict", json={"rows": x[:1].tolist(), "probabilities": True})
    assert refused.status_code == 422 and "does regression" in refused.json()["detail"]


def test_the_load_client_sends_rows_any_model_takes(tmp_path, monkeypatch, capsys):
    """scripts/bench_serve.py drew its rows from a normal distribution: an image model refuses
    pixels outside [0, 1], so every request against one failed, and the client still exited
    0 with only `"errors": N` to show for it. Its rows now lie in [0, 1), and a failed request
    makes it exit non-zero with the server's answer."""
    from lepton_jax.serve import create_app
    from scripts import bench_serve

    image = Model.mlp(hidden=[8])
    Trainer(image, Dataset.digits(), workdir=tmp_path / "digits", progress="off").train(epochs=1)
    app = {"app": create_app(image)}

    class Client(InProcess):  # bench_serve's httpx.Client, answered by the app in-process
        def __init__(self, base_url, headers, **kwargs):
            super().__init__(app["app"])
            self.headers = headers

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def _request(self, method, path, **kwargs):
            return super()._request(method, path, headers=self.headers, **kwargs)

    monkeypatch.setattr(bench_serve.httpx, "Client", Client)
    monkeypatch.setattr(sys, "argv", ["bench_serve.py", "--n", "5"])
    capsys.readouterr()  # the training's lines
    bench_serve.main()
    assert json.loads(capsys.readouterr().out)["errors"] == 0
    app["app"] = create_app(image, token=TOKEN)  # asked without the token: 401 at once
    with pytest.raises(SystemExit, match=r"^GET /health answered HTTP 401: .* needs --token"):
        bench_serve.main()
    app["app"] = create_app(image)

    class Short(Client):  # rows one value short: the server's 422 is the exit message
        def _request(self, method, path, **kwargs):
            if "json" in kwargs:
                kwargs["json"] = {"rows": [row[:-1] for row in kwargs["json"]["rows"]]}
            return super()._request(method, path, **kwargs)

    monkeypatch.setattr(bench_serve.httpx, "Client", Short)
    with pytest.raises(SystemExit, match=r"^5 of 5 requests failed; the first: HTTP 422: "
                                         r".*row 0 has 783 values; the model takes 784"):
        bench_serve.main()


def test_serving_beyond_this_machine_without_a_token_is_warned_of():
    """`--host 0.0.0.0` without a token answered anyone who reached the port, unremarked.
    The check is the function `serve` prints: no test binds an outside address."""
    from lepton_jax.serve import open_to_others

    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert open_to_others(host, None) == "", host
    for host in ("0.0.0.0", "192.168.1.5", "::", "myhost.example"):
        assert open_to_others(host, "secret") == ""
        assert open_to_others(host, None) == (
            f"warning: --host {host} without a token: anyone who can reach this port can "
            "query the model; set --token or $LEPTON_JAX_TOKEN to require one")
