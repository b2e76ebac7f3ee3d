"""The registry of real SAM-family checkpoints: where each lives, how big it is, what verifies it.

One entry per checkpoint. Values and their provenance (checked 2026-12-07):

- URLs: from each project's own README or download script (segment-anything README
  "Model Checkpoints"; sam2 ``checkpoints/download_ckpts.sh`` and README; MobileSAM's
  ``weights/mobile_sam.pt`` in its repository, pinned to the commit that last changed it).
- SAM 1: the six hex digits in Meta's file names are the start of the file's MD5 (Meta's own
  check, as ``segment_anything`` names its files). Meta publishes no size or full checksum; the
  byte counts and SHA-256 below are recorded identically by several independent public projects
  (model manifests and download scripts), which is where they come from.
- SAM 2.1: Meta publishes URLs only; byte counts and SHA-256 as recorded identically by several
  independent public projects (one states the SHA-256 equals the LFS metadata of Meta's own
  Hugging Face upload ``facebook/sam2.1-hiera-*``).
- MobileSAM: the git blob id of ``weights/mobile_sam.pt`` in the MobileSAM repository is a
  first-party full-content checksum (SHA-1 of ``b"blob <size>\\0" + content``), checked as such;
  the byte count is a third-party record (it is also implied by the blob id).
- Hugging Face ids: ``huggingface_hub`` downloads them into its own cache and checks each file's
  size against the Hub's metadata; basam_lite adds no checksum of its own.

Licences: SAM and SAM 2 READMEs ("The model is licensed under the Apache 2.0 license"; "The SAM
2 model checkpoints ... are licensed under Apache 2.0"), MobileSAM's LICENSE file (Apache 2.0),
the Hub model cards (``license: apache-2.0``).
"""

from __future__ import annotations

from dataclasses import dataclass

SAM1_URL = "https://dl.fbaipublicfiles.com/segment_anything/{}"
SAM1_PAGE = "https://github.com/facebookresearch/segment-anything#model-checkpoints"
SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/{}"
SAM2_PAGE = "https://github.com/facebookresearch/sam2/blob/main/checkpoints/download_ckpts.sh"
MOBILE_COMMIT = "a509aac54fdd7af59f843135f2f7cee307283c88"  # last commit to weights/mobile_sam.pt
MOBILE_URL = f"https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/{MOBILE_COMMIT}/weights/"
MOBILE_PAGE = "https://github.com/ChaoningZhang/MobileSAM/tree/master/weights"
HF_FILES = ("config.json", "model.safetensors")


@dataclass(frozen=True)
class Checkpoint:
    """One real checkpoint: a file at a URL, or a model repository on the Hugging Face Hub.

    ``family`` names the code that builds its model, as ``basam_lite.encoders.FAMILIES``
    keys it: ``"segment_anything"``, ``"sam2"`` (the ``sam2`` package), ``"mobile_sam"`` or
    ``"hf"`` (``transformers``; ``model`` is then the transformers class). Every non-``None`` check
    (``size``, ``sha256``, ``md5_prefix``, ``git_blob_sha1``) is applied to a download before it
    is renamed into the cache; ``verified`` says, in words, what is checked and where each value
    comes from.
    """

    name: str
    family: str
    model: str
    licence: str
    page: str
    verified: str
    url: str | None = None
    filename: str | None = None
    size: int | None = None
    sha256: str | None = None
    md5_prefix: str | None = None
    git_blob_sha1: str | None = None
    hub_id: str | None = None
    hub_files: tuple[str, ...] = ()
    approx_size: str = ""

    @property
    def on_hub(self) -> bool:
        """Whether ``huggingface_hub`` fetches it (else a plain HTTPS file)."""
        return self.hub_id is not None

    @property
    def source(self) -> str:
        """The URL or hub id, for messages."""
        return self.url or f"https://huggingface.co/{self.hub_id}"


_SAM1_SHA = (
    "size and SHA-256: identical in several independent public records (Meta publishes none)"
)
_SAM2_SHA = (
    "size and SHA-256: identical in several independent public records (Meta's README gives the "
    "URL only)"
)


def _sam1(model: str, filename: str, size: int, sha256: str) -> Checkpoint:
    prefix = filename.rsplit("_", 1)[1].split(".")[0]
    return Checkpoint(
        name=model,
        family="segment_anything",
        model=model,
        licence="Apache-2.0",
        page=SAM1_PAGE,
        url=SAM1_URL.format(filename),
        filename=filename,
        size=size,
        sha256=sha256,
        md5_prefix=prefix,
        verified=f"MD5 prefix {prefix} (Meta's file name); {_SAM1_SHA}",
        approx_size=f"{size / 1e6:,.0f} MB",
    )


def _sam2(variant: str, size: int, sha256: str) -> Checkpoint:
    filename = f"sam2.1_hiera_{variant}.pt"
    return Checkpoint(
        name=filename.removesuffix(".pt"),
        family="sam2",
        model=filename.removesuffix(".pt"),
        licence="Apache-2.0",
        page=SAM2_PAGE,
        url=SAM2_URL.format(filename),
        filename=filename,
        size=size,
        sha256=sha256,
        verified=_SAM2_SHA,
        approx_size=f"{size / 1e6:,.0f} MB",
    )


def _hf(hub_id: str, model: str, approx: str, note: str) -> Checkpoint:
    return Checkpoint(
        name=hub_id,
        family="hf",
        model=model,
        licence="Apache-2.0",
        page=f"https://huggingface.co/{hub_id}",
        hub_id=hub_id,
        hub_files=HF_FILES,
        verified="sizes checked by huggingface_hub against the Hub's metadata; " + note,
        approx_size=approx,
    )


_ENTRIES = (
    _sam1(
        "vit_b",
        "sam_vit_b_01ec64.pth",
        375_042_383,
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    _sam1(
        "vit_l",
        "sam_vit_l_0b3195.pth",
        1_249_524_607,
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    _sam1(
        "vit_h",
        "sam_vit_h_4b8939.pth",
        2_564_550_879,
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
    Checkpoint(
        name="mobile_sam",
        family="mobile_sam",
        model="vit_t",
        licence="Apache-2.0",
        page=MOBILE_PAGE,
        url=MOBILE_URL + "mobile_sam.pt",
        filename="mobile_sam.pt",
        size=40_728_226,
        git_blob_sha1="7ef2d090979fd9853adf17b7a99c8b94a1c5a6a7",
        verified="git blob id 7ef2d09 (first-party: the MobileSAM repository's tree); size: a "
        "third-party record",
        approx_size="41 MB",
    ),
    _sam2("tiny", 156_008_466, "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
    _sam2("small", 184_416_285, "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
    _sam2(
        "base_plus", 323_606_802, "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"
    ),
    _sam2("large", 898_083_611, "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
    _hf("facebook/sam-vit-base", "SamModel", "375 MB", "model.safetensors 375 MB on the Hub page"),
    _hf("facebook/sam-vit-large", "SamModel", "1.2 GB", "size as the ViT-L .pth (not confirmed)"),
    _hf("facebook/sam-vit-huge", "SamModel", "2.6 GB", "size as the ViT-H .pth (not confirmed)"),
    *(
        _hf(
            f"facebook/sam2.1-hiera-{v}",
            "Sam2Model",
            approx,
            "this id is transformers' own Sam2Model example; that the repository holds "
            "config.json and model.safetensors is not confirmed here (the original .pt is there)",
        )
        for v, approx in (
            ("tiny", "156 MB"),
            ("small", "184 MB"),
            ("base-plus", "324 MB"),
            ("large", "898 MB"),
        )
    ),
)

REGISTRY: dict[str, Checkpoint] = {e.name: e for e in _ENTRIES}
"""Every known checkpoint by name: ``vit_b``, ``mobile_sam``, ``sam2.1_hiera_tiny``,
``facebook/sam-vit-base``, ... Tests add their own entries (``monkeypatch.setitem``)."""
