"""The README's walkthrough (your folder of crops -> features -> search with re-ranking -> pictures), run as
written: its commands are read from README.md between the walkthrough markers and run by bash from the repository
root, so README and test cannot drift apart."""
import ast
import csv
import json
import os
import re
import stat
import subprocess
import sys

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- walkthrough -->", "<!-- /walkthrough -->"


def walkthrough_commands() -> str:
    """The shell block between the README's walkthrough markers."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, f"README.md needs one {BEGIN} ... {END} block"
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", text.split(BEGIN)[1].split(END)[0], re.S)
    assert len(blocks) == 1, "the walkthrough is one shell block"
    return blocks[0]


def console_scripts(folder) -> None:
    """`python` and every console script of setup.py as small executables in `folder`, running this checkout with
    this interpreter: what `make` installs into .venv/bin, without depending on when it last ran."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    (entries,) = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                  and [getattr(t, "id", "") for t in node.targets] == ["CONSOLE_SCRIPTS"]]
    os.makedirs(folder)
    scripts = {"python": f'exec "{sys.executable}" "$@"'}
    for entry in entries:
        name, target = (part.strip() for part in entry.split("="))
        module, function = target.split(":")
        scripts[name] = f'exec "{sys.executable}" -c "import sys; from {module} import {function} as f; ' \
                        f'sys.argv[0] = \'{name}\'; sys.exit(f())" "$@"'
    for name, body in scripts.items():
        path = os.path.join(folder, name)
        with open(path, "w") as handle:
            handle.write(f"#!/bin/bash\n{body}\n")
        os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)


def test_the_readme_walkthrough_runs_as_written(tmp_path):
    console_scripts(str(tmp_path / "bin"))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environment = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
                   "TMPDIR": str(scratch), "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    script = "set -euo pipefail\n" + walkthrough_commands() + '\necho "WALK=$WALK"\n'
    done = subprocess.run(["bash", "-c", script], cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    walk = re.findall(r"^WALK=(.*)$", done.stdout, re.M)[-1]
    assert walk.startswith(str(scratch))  # the walkthrough wrote into a scratch folder of its own

    # search mode: per query the top 10 crops with absolute paths that exist, distances ascending, no labels
    with open(os.path.join(walk, "after.json")) as handle:
        after = json.load(handle)
    assert after["labelled"] is False and after["meta"]["method"] == "k_reciprocal" and after["queries"]
    crops = os.path.join(walk, "crops")
    for query in after["queries"]:
        assert os.path.isabs(query["path"]) and os.path.isfile(query["path"]) and "pid" not in query
        items = query["ranking"]
        assert [item["rank"] for item in items] == list(range(1, 11))
        assert all(os.path.isabs(i["path"]) and os.path.isfile(i["path"]) and os.path.dirname(i["path"]) == crops
                   and "match" not in i for i in items)
        assert np.all(np.diff([item["distance"] for item in items]) >= 0)
    with open(os.path.join(walk, "after.csv")) as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 10 * len(after["queries"]) and "match" not in lines[0]
    assert [(int(line["query"]), line["gallery_path"]) for line in lines[:10]] == [
        (after["queries"][0]["query"], item["path"]) for item in after["queries"][0]["ranking"]]

    # pictures: one PNG per query, two rows (before, after), grey frames (no labels)
    pictures = sorted(os.listdir(os.path.join(walk, "pictures")))
    assert len(pictures) == 3 and all(name.startswith("query_") and name.endswith(".png") for name in pictures)
    from experiments.plots import ranked_lists
    tile_h, tile_w = ranked_lists.TILE[0] + 2 * ranked_lists.FRAME, ranked_lists.TILE[1] + 2 * ranked_lists.FRAME
    canvas = cv2.imread(os.path.join(walk, "pictures", pictures[0]))
    assert canvas.shape == (2 * ranked_lists.MARGIN + 2 * (2 * ranked_lists.TEXT_HEIGHT + tile_h),
                            2 * ranked_lists.MARGIN + tile_w + ranked_lists.QUERY_GAP + 10 * tile_w
                            + 9 * ranked_lists.GAP, 3)
    y = ranked_lists.MARGIN + 2 * ranked_lists.TEXT_HEIGHT + 1
    x = ranked_lists.MARGIN + tile_w + ranked_lists.QUERY_GAP + 1
    assert tuple(int(v) for v in canvas[y, x]) == ranked_lists.GREY
