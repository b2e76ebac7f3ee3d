"""Run every command of the README's real-checkpoint, fine-tuning and sharding sections, at a
reduced size, with a stand-in checkpoint: each must finish or refuse in one line.

The commands are read from README.md itself (its ```bash and ```python blocks in "Using a real
SAM checkpoint" up to "The library"), so that README and rehearsal cannot drift apart, and run
in a temporary folder with these substitutions, and no others:

- ``$BASAM_SAM_CHECKPOINT``: seeded random ViT-B weights saved under the official file name
  (``basam_lite.standin``; the MD5 prefix of the name is the file's own);
- ``/data/DIS5K``: a DIS5K layout of procedural scenes (two images per split);
- sizes: 512, 768, 1024, 1536, 2048 px become 64, 96, 128, 192, 256 px (``--size`` and the
  Python cell's sizes too; a two-axis sweep's default extent sides, 768 1024 2048 for ViT-B,
  are cut the same way), ``--images 240`` becomes 2, ``--epochs 10`` becomes 1, ``--batch-size 2
  --accumulate 4`` stays (one step);
- ``weights get``: run offline (``BASAM_OFFLINE=1``, an empty cache of its own), so it is the
  one-line refusal that names the URL, never a download;
- ``--device cuda``: the first such command runs as written; on a machine without a GPU that
  is the one-line refusal (exit 2, checked), and from then on every command runs with
  ``--device cpu`` to completion;
- variants: a sweep or study that names none runs ``vanilla`` and ``paper`` (stock and
  fused attention, the scale and the mask), not all seven;
- images: each sweep gets ``--limit 1`` (``--limit 2`` for the sharded run: one image per
  shard), the study ``--images 2``;
- the SLURM array (``--array=0-7``) runs as 2 tasks one after the other, with the variables a
  SLURM job array sets (``SLURM_ARRAY_TASK_ID``, ``_COUNT``, ``_MIN``), and the merge of their
  tables. torchrun's line (``RANK``, ``WORLD_SIZE``) is the same sweep under other variables,
  which ``tests/test_sweep_trust.py`` reads; it is not rerun here.

``python scripts/researcher_path.py`` prints each command, its exit status and seconds, and
exits non-zero at the first command that neither finishes nor refuses in one line.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST, LAST = "## Using a real SAM checkpoint", "## The library"
SIZES = {"512": "64", "768": "96", "1024": "128", "1536": "192", "2048": "256"}
EXTENT = ("768", "1024", "2048")
"""ViT-B's default extent sides (a sweep without --axis runs both axes), cut like the others."""
SIZE_FLAGS = (
    "--resolutions", "--extent-resolutions", "--zoom-resolutions", "--mechanism-zoom",
    "--mechanism-extent", "--size",
)  # fmt: skip
OTHER = {"--images": {"240": "2"}, "--epochs": {"10": "1"}}
VARIANTS = ("vanilla", "paper")
"""The variants a sweep or study runs here when its command names none (all seven take 3.5x
as long; each one's code is tested by tests/test_sweep*.py)."""


def blocks(readme: str) -> list[tuple[str, str]]:
    """(language, text) of every fenced bash or python block of the sections rehearsed."""
    section = readme.split(FIRST, 1)[1].split(LAST, 1)[0]
    return re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)


def commands(text: str) -> list[str]:
    """The shell commands of a bash block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]


def reduce(argv: list[str]) -> list[str]:
    """``argv`` with the sizes and counts cut (see the module docstring)."""
    out, flag = [], None
    for a in argv:
        if a.startswith("--"):
            flag = a
            out.append(a)
            continue
        if flag in SIZE_FLAGS:
            a = SIZES.get(a, a)
        elif flag in OTHER:
            a = OTHER[flag].get(a, a)
        out.append(a)
    return out


def make_dis5k(root: Path) -> Path:
    """A DIS5K layout (``im/*.jpg``, ``gt/*.png`` per split) of procedural scenes."""
    from PIL import Image

    from basam_lite.datasets import ProceduralScenes

    scenes = ProceduralScenes(16, seed=3, size=160)
    splits = ("DIS-TR", "DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")
    for k, split in enumerate(splits):
        (root / split / "im").mkdir(parents=True)
        (root / split / "gt").mkdir(parents=True)
        for j in range(3 if split == "DIS-TR" else 2 if split == "DIS-TE1" else 1):
            s = scenes[(2 * k + j) % len(scenes)]
            Image.fromarray(s.image).save(root / split / "im" / f"{split}-{j}.jpg", quality=95)
            Image.fromarray(s.mask.astype("uint8") * 255).save(
                root / split / "gt" / f"{split}-{j}.png"
            )
    return root


class Rehearsal:
    def __init__(self, work: Path, checkpoint: Path, dis5k: Path) -> None:
        self.work, self.checkpoint, self.dis5k = work, checkpoint, dis5k
        self.env = {
            **os.environ,
            "BASAM_SAM_CHECKPOINT": str(checkpoint),
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "BASAM_OFFLINE": "1",  # `weights get` must refuse here, never download
            "BASAM_CACHE_DIR": str(work / "cache"),  # an empty weights cache of its own
        }
        for k in ("SLURM_ARRAY_TASK_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
            self.env.pop(k, None)
        self.gpu: bool | None = None  # unknown until the first --device cuda command

    def argv(self, command: str, images: int = 1) -> list[str]:
        expanded = command.replace("$BASAM_SAM_CHECKPOINT", str(self.checkpoint))
        expanded = expanded.replace("/data/DIS5K", str(self.dis5k))
        expanded = expanded.replace("-of-8", "-of-2")  # the array's 8 tasks run as 2
        argv = shlex.split(expanded, comments=True)
        if argv[0] == "python":
            argv[0] = sys.executable
        runs = argv[2:4] in (["basam_lite", "sweep"], ["basam_lite", "study"])
        if runs and "--merge" not in argv and "--variants" not in argv:
            argv += ["--variants", *VARIANTS]  # the variants cut (each is tested elsewhere)
        both = argv[2:4] == ["basam_lite", "sweep"] and "--merge" not in argv
        if both and "--axis" not in argv and "--extent-resolutions" not in argv:
            argv += ["--extent-resolutions", *EXTENT]  # ViT-B's default, cut below
        if argv[2:4] == ["basam_lite", "sweep"] and "--merge" not in argv and "--limit" not in argv:
            argv += ["--limit", str(images)]  # the images cut: one per sweep (per shard)
        return reduce(argv)

    def run(self, argv: list[str], env: dict[str, str] | None = None, label: str = "") -> int:
        """Run one command; a non-zero status must be a one-line refusal (exit 2)."""
        if any("*" in a for a in argv):  # a shell glob (the merge): expand it here
            argv = [
                a for x in argv for a in (sorted(map(str, self.work.glob(x))) if "*" in x else [x])
            ]
        t0 = time.perf_counter()
        done = subprocess.run(
            argv, cwd=self.work, env={**self.env, **(env or {})}, capture_output=True, text=True
        )
        seconds = time.perf_counter() - t0
        shown = " ".join(shlex.quote(a) for a in [Path(argv[0]).name, *argv[1:]])
        print(f"[{done.returncode}] {seconds:5.1f} s {label}{shown}", flush=True)
        if done.returncode == 0:
            return 0
        err = done.stderr.strip().splitlines()
        if done.returncode == 2 and len(err) == 1 and "Traceback" not in done.stderr:
            print(f"      refused: {err[0]}")
            return 2
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise SystemExit(f"{shown}: neither finished nor refused in one line")

    def bash(self, command: str) -> None:
        if command.startswith("export "):  # the variable: already set to the stand-in
            return
        argv = self.argv(command)
        if "--device" in argv and argv[argv.index("--device") + 1] == "cuda":
            if self.gpu is not False and self.run(argv) == 0:
                self.gpu = True
                return  # a GPU: done as written
            if self.gpu is None:
                self.gpu = False  # refused once, in one line: the CPU from now on
            argv[argv.index("--device") + 1] = "cpu"
        self.run(argv)

    def python(self, code: str) -> None:
        code = code.replace("~/weights/sam_vit_b_01ec64.pth", str(self.checkpoint))
        code = re.sub(
            r"set_input_size\(sam, (\d+)\)",
            lambda m: f"set_input_size(sam, {SIZES.get(m.group(1), m.group(1))})",
            code,
        )
        code += (
            "\nimport numpy as np\npredictor.set_image(np.zeros((96, 128, 3), np.uint8))\n"
            "masks, _, _ = predictor.predict(box=np.array([10, 10, 60, 60]))\n"
            "print('python cell:', masks.shape)\n"
        )
        self.run([sys.executable, "-c", code], label="(README python) ")

    def slurm(self, script: str) -> None:
        """The sbatch script: its python line as each task of a 2-task array."""
        line = next(c for c in commands(script) if c.startswith("python"))
        argv = self.argv(line, images=2)
        if "--device" in argv:
            argv[argv.index("--device") + 1] = "cpu"  # the tasks' GPUs
        for task in range(2):
            env = {
                "SLURM_ARRAY_TASK_ID": str(task),
                "SLURM_ARRAY_TASK_COUNT": "2",
                "SLURM_ARRAY_TASK_MIN": "0",
            }
            self.run(argv, env, label=f"(SLURM task {task}/2) ")


def main() -> int:
    from basam_lite.standin import write_standin_checkpoint

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="researcher-path-") as tmp:
        work = Path(tmp)
        checkpoint = write_standin_checkpoint("vit_b", work / "weights")
        dis5k = make_dis5k(work / "DIS5K")
        r = Rehearsal(work, checkpoint, dis5k)
        print(f"stand-in checkpoint {checkpoint.name}; DIS5K of procedural scenes in {dis5k}")
        readme = (ROOT / "README.md").read_text()
        for lang, text in blocks(readme):
            if lang == "python":
                r.python(text)
            elif "#SBATCH" in text:
                r.slurm(text)
            else:
                for command in commands(text):
                    r.bash(command)
    print(f"every command finished or refused in one line ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
