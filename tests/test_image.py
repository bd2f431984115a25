"""Content-hash tags: same context, same tag; any change to what goes into the image, a new one."""

import shutil

from kubesweep.local.image import content_tag

from .conftest import EXAMPLES


def _copy(tmp_path):
    ctx = tmp_path / "ctx"
    shutil.copytree(EXAMPLES, ctx, ignore=shutil.ignore_patterns("__pycache__"))
    return ctx


def test_tag_is_stable_and_follows_the_content(tmp_path):
    ctx = _copy(tmp_path)
    args = {"BASE": "kubesweep/python-base:bookworm"}
    tag = content_tag(ctx, ctx / "Dockerfile", args)
    assert tag == content_tag(ctx, ctx / "Dockerfile", dict(args)) and len(tag) == 12
    assert content_tag(ctx, ctx / "Dockerfile", {"BASE": "other:1"}) != tag
    (ctx / "train.py").write_text((ctx / "train.py").read_text() + "\n# changed\n")
    changed = content_tag(ctx, ctx / "Dockerfile", args)
    assert changed != tag
    (ctx / "train.py").chmod(0o755)
    assert content_tag(ctx, ctx / "Dockerfile", args) != changed


def test_dockerignored_files_do_not_change_the_tag(tmp_path):
    ctx = _copy(tmp_path)
    (ctx / ".dockerignore").write_text("output/\n*.log\n")
    tag = content_tag(ctx, ctx / "Dockerfile", {})
    (ctx / "output").mkdir()
    (ctx / "output" / "model.npz").write_bytes(b"x" * 100)
    (ctx / "run.log").write_text("noise")
    assert content_tag(ctx, ctx / "Dockerfile", {}) == tag
