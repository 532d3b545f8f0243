"""Issue 20: the Train page races several runs at once and draws them on one board (AppTest)."""
from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

from test_app_pages import REPO, env, no_exceptions, small_sample  # noqa: F401 - pytest fixtures

TIMEOUT = 60


def lanes(at: AppTest) -> dict[str, str]:
    """Each progress bar's text on the board (one per running or finished run)."""
    return {p.proto.text for p in at.get("progress")}


def test_two_runs_race_on_one_board_and_both_curves_move(env, monkeypatch):  # noqa: F811
    from inspector.jobs import TRAINING
    from ui.state import runner

    monkeypatch.setenv("INSPECTOR_PARALLEL_TRAININGS", "2")
    env.load_sample_data()
    train = AppTest.from_file(str(REPO / "pages/2_Train.py"), default_timeout=TIMEOUT).run()
    train.radio(key="strategy").set_value("fine_tune")
    train.number_input(key="epochs").set_value(3)
    train.number_input(key="image_size").set_value(64)
    train.selectbox(key="augment").set_value("none")
    train.multiselect(key="race_backbones_tf_efficientnet_lite0").set_value(["tf_efficientnet_lite1"]).run()
    no_exceptions(train)
    assert any("runs 2 trainings at the same time" in c.value for c in train.caption)
    before = {h.id for h in runner().handles(TRAINING)}  # the runner is shared by every test of this process
    train.button(key="race").click().run()
    no_exceptions(train)
    assert any("2 trainings started" in t.value for t in train.toast)

    handles = [h for h in runner().handles(TRAINING) if h.id not in before]
    assert len(handles) == 2
    both_running = both_drawn_while_racing = False
    deadline = time.monotonic() + 600
    while not all(h.finished for h in handles):
        assert time.monotonic() < deadline, "the race did not finish in time"
        time.sleep(1)
        train.run()
        no_exceptions(train)
        racing = all(h.status == "running" for h in handles)
        both_running |= racing
        specs = [c.proto.spec for c in train.get("plotly_chart")]
        both_drawn_while_racing |= racing and any("tf_efficientnet_lite0" in spec and "tf_efficientnet_lite1" in spec
                                                  for spec in specs)
    assert both_running, "the two trainings never ran at the same time"
    assert both_drawn_while_racing, "the board never drew both runs' curves while both trained"
    assert [h.status for h in handles] == ["completed", "completed"], [h.error for h in handles]
    train.run()
    no_exceptions(train)
    texts = lanes(train)
    assert sum(t.startswith("Completed in") for t in texts) >= 2, texts
    names = [m.value for m in train.markdown if m.value.startswith("**tf_efficientnet_lite")]
    assert len(set(names)) == 2, names  # each run its own lane, its own name
    spec = train.get("plotly_chart")[0].proto.spec
    assert "tf_efficientnet_lite0" in spec and "tf_efficientnet_lite1" in spec  # one chart, both runs
