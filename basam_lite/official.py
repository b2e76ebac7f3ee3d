"""Where each claim about the official BA-SAM code can be checked: file, lines and commit.

Notebook 08 audits github.com/zongzi13545329/BA-SAM. Every sentence there that says what the
official code does cites one or more claim ids from :data:`REFERENCES` (``[ref: id]``), and
``tests/test_official_refs.py`` checks that every cited id exists here and that each entry is
well formed. The official repository has no licence, so no line of it is copied: each entry
holds the place (path, 1-based inclusive line range, full commit id), a *token* of a few
characters that occurs on those lines, and the claim in this project's own words.

Which commit: the repository's HEAD is f52ca5a (short id; the full id is not known here), but
the reference index this project's sessions can read holds no file version at that commit. It
holds each file at the commit that last changed it, among :data:`STORED_COMMITS`; every
reference below names the commit of the version that was read. For the files the audit rests
on, that is the most developed stored version (``dabc86e`` for the model, the evaluation and
the data code, ``7a66db3`` for ``utils.py``, ``92bf4dc`` for ``train.py``). Whether a commit
after those (HEAD included) moved the cited lines could not be checked.

Line numbers were counted from the stored text and the token found on the cited lines; the
text lengths matched the store's character counts. :func:`check_against` repeats that check
for anyone with a clone of the official repository (``scripts/check_official_refs.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import UserError

REPOSITORY = "github.com/zongzi13545329/BA-SAM"
HEAD_SHORT = "f52ca5a"  # the repository's HEAD as seen on GitHub; not in the reference index

#: The commits at which the reference index holds versions of the repository's files, with
#: what the read versions show about their order.
STORED_COMMITS: dict[str, str] = {
    "f99962fc9472e0f461bfd550b7185c03029f93e1": "first upload: SAM's encoder unchanged "
    "(no coefficient, no extra scale), checkpoint loaded whole",
    "3788c6dbdef08343f9eb0cf0f1ab3f53046307e6": "image_encoder.py: learnable coefficient on "
    "the rel-pos term, no extra scale",
    "7a66db3ac570c5137a0817f17a3b34c2aad847e2": "image_encoder.py: scale log_1024(img_size) "
    "in every block; build_sam.py: img_size from args; utils.py; tiny_vit_sam.py",
    "dabc86ee9387a13f86cc1f9955187cd32f68153c": "image_encoder.py: scale log_4096(L^2 4096) "
    "in global blocks; build_sam.py: use_abs_pos=False, rel_pos dropped; val.py, function.py, "
    "dataset.py, tiny_vit_sam.py",
    "92bf4dc76a39544478679b75c4c0c326312b514c": "train.py: strict checkpoint loading; its "
    "order relative to dabc86e is not known",
    "1edfe0c2c92fcc8c8049a306424dcf1c88035738": "README.md (no citation yet)",
    "2b63db0a75abdaef326785dee987f1540cc5f74b": "README.md (with the arXiv citation)",
}


@dataclass(frozen=True)
class OfficialRef:
    """One checkable statement about the official code.

    ``lines`` is a 1-based inclusive ``(first, last)`` range in ``path`` at ``commit``;
    ``token`` occurs on one of those lines; each string of ``absent`` occurs on none of them
    (for claims that something is *not* done, ``lines`` then spans the whole file).
    """

    claim_id: str
    claim: str
    path: str
    commit: str
    lines: tuple[int, int]
    token: str
    absent: tuple[str, ...] = ()

    @property
    def repository(self) -> str:
        return REPOSITORY

    def cite(self) -> str:
        """``path:first-last @ commit7``, the form the notebook prints."""
        first, last = self.lines
        span = f"{first}" if first == last else f"{first}-{last}"
        return f"{self.path}:{span} @ {self.commit[:7]}"


_ENC = "models/sam/modeling/image_encoder.py"
_BUILD = "models/sam/build_sam.py"
_TINY = "mobile_sam/modeling/tiny_vit_sam.py"
_D = "dabc86ee9387a13f86cc1f9955187cd32f68153c"
_U = "7a66db3ac570c5137a0817f17a3b34c2aad847e2"
_T = "92bf4dc76a39544478679b75c4c0c326312b514c"
_SEEDS = ("manual_seed", "np.random.seed", "random.seed", "cudnn.deterministic")

#: Every claim notebook 08 makes about the official code, in the order it makes them.
REFERENCES: tuple[OfficialRef, ...] = (
    OfficialRef(
        "lambda-integer-side",
        "the encoder passes L = img_size // 1024 (an integer, "
        "fixed when the model is built) to every block",
        _ENC,
        _D,
        (89, 89),
        "img_size // 1024",
    ),
    OfficialRef(
        "lambda-global-only",
        "only blocks with window_size 0 (the global ones) get the extra factor",
        _ENC,
        _D,
        (169, 169),
        "if_global",
    ),
    OfficialRef(
        "lambda-formula",
        "global blocks scale q.k by head_dim^-0.5 * "
        "log_4096(L^2 * 4096), computed once in __init__; others keep head_dim^-0.5",
        _ENC,
        _D,
        (223, 226),
        "math.log",
    ),
    OfficialRef(
        "rel-pos-every-block",
        "the encoder is built with rel-pos enabled in all "
        "blocks, so every block gets the coefficient",
        _BUILD,
        _D,
        (89, 89),
        "use_rel_pos=True",
    ),
    OfficialRef(
        "mask-coefficient",
        "each attention block adds one learnable scalar, "
        "initialised to 0.1, next to its rel-pos tables",
        _ENC,
        _D,
        (237, 237),
        "coefficient",
    ),
    OfficialRef(
        "rel-pos-tables-zero-init",
        "the rel-pos tables are created as zeros",
        _ENC,
        _D,
        (238, 239),
        "torch.zeros",
    ),
    OfficialRef(
        "mask-is-scaled-rel-pos",
        "the rel-pos term is multiplied by the coefficient and added to q.k before the softmax",
        _ENC,
        _D,
        (251, 251),
        "self.coefficient",
    ),
    OfficialRef(
        "mask-is-scaled-rel-pos-gather",
        "get_rel_pos returns the gathered table times the coefficient",
        _ENC,
        _D,
        (339, 339),
        "coefficient*",
    ),
    OfficialRef(
        "abs-pos-off",
        "the encoder is built without the absolute position embedding",
        _BUILD,
        _D,
        (88, 88),
        "use_abs_pos = False",
    ),
    OfficialRef(
        "rel-pos-dropped-at-load",
        "every checkpoint key containing 'rel_pos' is "
        "left out before loading SAM's weights (strict=False)",
        _BUILD,
        _D,
        (154, 158),
        "'rel_pos' not in k",
    ),
    OfficialRef(
        "rel-pos-dropped-at-eval",
        "the standalone evaluation script leaves out the "
        "'rel_pos' keys of the fine-tuned checkpoint again",
        "val.py",
        _D,
        (68, 74),
        "'rel_pos' not in k",
    ),
    OfficialRef(
        "click-row-col",
        "the click is an index of np.argwhere on the mask: (row, col)",
        "utils.py",
        _U,
        (1152, 1154),
        "np.argwhere",
    ),
    OfficialRef(
        "click-from-dataset",
        "the dataset returns that (row, col) index as the "
        "prompt 'pt' (ISIC class shown; the others do the same)",
        "dataset.py",
        _D,
        (71, 71),
        "random_click",
    ),
    OfficialRef(
        "click-passed-unchanged",
        "training passes 'pt' to SAM as point_coords "
        "unchanged (the coordinate transform is commented out)",
        "function.py",
        _D,
        (117, 118),
        "point_coords = pt",
    ),
    OfficialRef(
        "click-unseeded",
        "the click index is drawn with NumPy's global generator",
        "utils.py",
        _U,
        (1154, 1154),
        "np.random.randint",
    ),
    OfficialRef(
        "no-seed-train",
        "train.py never seeds a generator",
        "train.py",
        _T,
        (1, 222),
        "import",
        _SEEDS,
    ),
    OfficialRef(
        "no-seed-function",
        "function.py never seeds a generator (its variable named seed is a random tensor)",
        "function.py",
        _D,
        (1, 291),
        "import",
        _SEEDS,
    ),
    OfficialRef(
        "clicks-one-prompt-train",
        "training gives the batch's B clicks one leading "
        "axis: the prompt encoder gets one prompt holding all B clicks",
        "function.py",
        _D,
        (121, 121),
        "[None, :, :]",
    ),
    OfficialRef(
        "clicks-one-prompt-eval",
        "evaluation does the same",
        "function.py",
        _D,
        (239, 239),
        "[None, :, :]",
    ),
    OfficialRef(
        "prompt-encoder-no-grad",
        "in training the prompt encoder runs under no_grad",
        "function.py",
        _D,
        (136, 142),
        "torch.no_grad",
    ),
    OfficialRef(
        "metric-thresholds",
        "evaluation thresholds are 0.1, 0.3, 0.5, 0.7, 0.9",
        "function.py",
        _D,
        (192, 192),
        "0.1, 0.3, 0.5, 0.7, 0.9",
    ),
    OfficialRef(
        "metric-on-logits",
        "the mask decoder's output goes to eval_seg without a "
        "sigmoid (only resized to the mask's shape when they differ)",
        "function.py",
        _D,
        (258, 283),
        "eval_seg(pred",
    ),
    OfficialRef(
        "metric-binarise",
        "eval_seg binarises the prediction and the ground truth at each threshold",
        "utils.py",
        _U,
        (1059, 1062),
        "(pred > th)",
    ),
    OfficialRef(
        "metric-average",
        "IoU, Dice and MAE are summed over the thresholds and divided by their number",
        "utils.py",
        _U,
        (1064, 1077),
        "len(threshold)",
    ),
    OfficialRef(
        "metric-mae-binary",
        "MAE is the mean absolute difference of the two binary masks",
        "utils.py",
        _U,
        (1075, 1075),
        "mae(disc_pred",
    ),
    OfficialRef(
        "optimizer-scheduler",
        "Adam over all parameters, and a StepLR(step_size=10, gamma=0.5) is created",
        "train.py",
        _T,
        (46, 47),
        "StepLR",
    ),
    OfficialRef(
        "scheduler-never-stepped",
        "train.py never calls the scheduler's step",
        "train.py",
        _T,
        (1, 222),
        "scheduler",
        ("scheduler.step",),
    ),
    OfficialRef(
        "scheduler-not-passed",
        "the epoch loop passes the optimiser but no scheduler to function.train_sam",
        "train.py",
        _T,
        (169, 173),
        "function.train_sam",
    ),
    OfficialRef(
        "train-sam-ignores-schedulers",
        "train_sam's schedulers argument defaults to None and is never used",
        "function.py",
        _D,
        (81, 82),
        "schedulers=None",
    ),
    OfficialRef(
        "val-is-test-isic",
        "ISIC: the 'validation' loader is built from the test dataset",
        "train.py",
        _T,
        (102, 102),
        "isic_test_dataset",
    ),
    OfficialRef(
        "val-is-test-cod10k", "COD10K: the same", "train.py", _T, (115, 115), "cod10k_test_dataset"
    ),
    OfficialRef(
        "val-is-test-duts", "DUTS: the same", "train.py", _T, (146, 146), "duts_test_dataset"
    ),
    OfficialRef(
        "best-by-mae-on-val",
        "each evaluated epoch is scored on that loader and the "
        "checkpoint with the lowest MAE is saved",
        "train.py",
        _T,
        (193, 216),
        "emae < best_mae",
    ),
    OfficialRef(
        "mobile-1444",
        "MobileSAM's attention scales q.k by key_dim^-0.5 * "
        "log_1444(L^2 * 1444); the comment above says 1444 came from the batch "
        "dimension B of the attention input",
        _TINY,
        _D,
        (225, 226),
        "1444",
    ),
    OfficialRef(
        "mobile-1444-batch",
        "a commented-out line rescales by log_1444(B)",
        _TINY,
        _D,
        (282, 282),
        "math.log(B, 1444)",
    ),
    OfficialRef(
        "mobile-bias-train-only",
        "MobileSAM multiplies the learned bias table by "
        "the coefficient in training; in eval mode it adds the cached table 'ab', "
        "unscaled",
        _TINY,
        _D,
        (286, 287),
        "if self.training else self.ab",
    ),
    OfficialRef(
        "mobile-ab-unscaled",
        "the cached eval-mode table 'ab' is the bias table without the coefficient",
        _TINY,
        _D,
        (263, 264),
        "attention_bias_idxs",
    ),
)

_BY_ID = {r.claim_id: r for r in REFERENCES}
CITATION = re.compile(r"\[ref: ([a-z0-9-]+(?:,\s+[a-z0-9-]+)*)\]")


def ref(claim_id: str) -> OfficialRef:
    """The reference for one claim id; :class:`UserError` naming the known ids otherwise."""
    if claim_id not in _BY_ID:
        raise UserError(
            f"no reference with id {claim_id!r}: use one of {', '.join(sorted(_BY_ID))}"
        )
    return _BY_ID[claim_id]


def cited_ids(text: str) -> list[str]:
    """Claim ids cited in ``text`` as ``[ref: id]`` or ``[ref: id1, id2]`` (a group may wrap
    across lines), in order."""
    return [i.strip() for group in CITATION.findall(text) for i in group.split(",")]


def table_rows() -> list[dict[str, str]]:
    """One row per claim (id, where, commit, token), for the notebook's reference table."""
    return [
        {"id": r.claim_id, "where": r.cite(), "token": r.token, "claim": r.claim}
        for r in REFERENCES
    ]


def check_against(
    read: Callable[[str, str], str], references: tuple[OfficialRef, ...] | None = None
) -> list[str]:
    """Problems found when the references are checked against the official source.

    ``read(commit, path)`` returns the text of ``path`` at ``commit`` (for instance from
    ``git show commit:path`` in a clone). A reference passes when its lines exist, its token
    occurs on one of them and none of its ``absent`` strings does. Returns one line per
    problem; an empty list means all pass.
    """
    problems = []
    for r in REFERENCES if references is None else references:
        lines = read(r.commit, r.path).splitlines()
        first, last = r.lines
        if last > len(lines):
            problems.append(f"{r.claim_id}: {r.cite()} but the file has {len(lines)} lines")
            continue
        span = lines[first - 1 : last]
        if not any(r.token in line for line in span):
            problems.append(f"{r.claim_id}: token {r.token!r} not on {r.cite()}")
        problems += [
            f"{r.claim_id}: {a!r} occurs on {r.cite()}"
            for a in r.absent
            if any(a in line for line in span)
        ]
    return problems


_MOBILE_BUILD = "mobile_sam/build_sam.py"

#: The official code's MobileSAM path, cited by the MobileSAM family
#: (:mod:`basam_lite.encoders.mobilesam_official`, ``docs/mobilesam.md``): the three notebook-08
#: references on it, then the family's own (kept out of :data:`REFERENCES`, which lists what
#: notebook 08 cites). Checked against a clone like the others (``check_against(read,
#: MOBILE_REFERENCES)``).
MOBILE_REFERENCES: tuple[OfficialRef, ...] = (
    ref("mobile-1444"),
    ref("mobile-bias-train-only"),
    ref("mobile-ab-unscaled"),
    OfficialRef(
        "mobile-coefficient-init",
        "each TinyViT attention module adds one learnable coefficient, initialised to 0.1",
        _TINY,
        _D,
        (255, 255),
        "torch.tensor([0.1])",
    ),
    OfficialRef(
        "mobile-length-scale",
        "the side ratio passed to every attention layer is img_size // 1024, an integer",
        _TINY,
        _D,
        (521, 521),
        "img_size // 1024",
    ),
    OfficialRef(
        "mobile-fixed-views",
        "forward_features views the last stage as 32, 64, 128 or 256 tokens a side for 512, "
        "1024, 2048 or 4096 px and prints a message for any other size",
        _TINY,
        _D,
        (621, 630),
        "Wrong Resolution",
    ),
    OfficialRef(
        "mobile-eval-before-load",
        "build_sam_vit_t calls eval() before loading the checkpoint (strict=False), so the "
        "cached eval-mode bias tables are the zero tables of the fresh model until eval() runs "
        "again",
        _MOBILE_BUILD,
        _D,
        (91, 95),
        "strict = False",
    ),
)
