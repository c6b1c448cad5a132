"""Port of ``conformance/testdata.go`` (distribution-spec ``main``): generated
images, indexes, artifacts and referrers, with image-spec v1.1 JSON shapes
(field order and ``omitempty`` as in ``specs-go/v1``)."""

from __future__ import annotations

import gzip
import io
import secrets
import tarfile
from typing import Any, Callable, Optional

import attr

from .gojson import b64, digest_of, go_json, rand_text
from .main_api import (
    MT_OCI_CONFIG,
    MT_OCI_IMAGE,
    MT_OCI_INDEX,
    MT_OCI_LAYER,
    MT_OCI_LAYER_GZ,
    MT_OCI_LAYER_PRE,
    MT_OCTET_STREAM,
    Opt,
)


def platform_json(p: dict[str, Any]) -> dict[str, Any]:
    """``v1.Platform``: architecture, os, then the omitempty fields."""
    out: dict[str, Any] = {"architecture": p.get("architecture", ""), "os": p.get("os", "")}
    if p.get("os.version"):
        out["os.version"] = p["os.version"]
    if p.get("os.features"):
        out["os.features"] = p["os.features"]
    if p.get("variant"):
        out["variant"] = p["variant"]
    return out


@attr.s(auto_attribs=True)
class Descriptor:
    """``v1.Descriptor``."""

    media_type: str
    digest: str
    size: int
    urls: Optional[list[str]] = None
    annotations: Optional[dict[str, str]] = None
    data: Optional[bytes] = None
    platform: Optional[dict[str, Any]] = None
    artifact_type: str = ""

    def copy(self) -> "Descriptor":
        return attr.evolve(
            self,
            urls=list(self.urls) if self.urls is not None else None,
            annotations=dict(self.annotations) if self.annotations is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            d["urls"] = self.urls
        if self.annotations:
            d["annotations"] = {k: self.annotations[k] for k in sorted(self.annotations)}
        if self.data:
            d["data"] = b64(self.data)
        if self.platform is not None:
            d["platform"] = platform_json(self.platform)
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d

    def __str__(self) -> str:
        return (
            f"{{MediaType:{self.media_type} Digest:{self.digest} Size:{self.size} "
            f"ArtifactType:{self.artifact_type} Annotations:{self.annotations or {}}}}"
        )


def _with_extra_field(doc: dict[str, Any]) -> dict[str, Any]:
    """``genAddJSONFields``: an unknown ``org.<random>`` string field appended."""
    out = dict(doc)
    out["org." + rand_text()] = rand_text()
    return out


# --- generator options ------------------------------------------------------------


@attr.s(auto_attribs=True)
class GenOpts:
    algo: str = ""
    annotations: Optional[dict[str, str]] = None
    annotation_uniq: bool = False
    artifact_type: str = ""
    blob_size: int = 0
    comp: str = ""
    config_bytes: Optional[bytes] = None
    config_media_type: str = ""
    descriptor_media_type: str = ""
    extra_field: bool = False
    layer_bytes: Optional[bytes] = None
    layer_count: int = 0
    layer_media_type: str = ""
    platform: dict[str, Any] = attr.Factory(dict)
    platforms: Optional[list[Optional[dict[str, Any]]]] = None
    set_data: bool = False
    subject: Optional[Descriptor] = None
    tag: str = ""


GenOpt = Callable[[GenOpts], None]
COMP_UNCOMP = "uncompressed"
COMP_GZIP = "gzip"


def gen_with_algo(algo: str) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.algo = algo

    return f


def gen_with_annotations(annotations: dict[str, str]) -> GenOpt:
    def f(o: GenOpts) -> None:
        if o.annotations is None:
            o.annotations = annotations
        else:
            o.annotations.update(annotations)

    return f


def gen_with_annotation_uniq() -> GenOpt:
    def f(o: GenOpts) -> None:
        o.annotation_uniq = True

    return f


def gen_with_artifact_type(at: str) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.artifact_type = at

    return f


def gen_with_compress(comp: str) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.comp = comp

    return f


def gen_with_config_bytes(b: bytes) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.config_bytes = b

    return f


def gen_with_config_media_type(mt: str) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.config_media_type = mt

    return f


def gen_with_descriptor_data() -> GenOpt:
    def f(o: GenOpts) -> None:
        o.set_data = True

    return f


def gen_with_descriptor_media_type(mt: str) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.descriptor_media_type = mt

    return f


def gen_with_extra_field() -> GenOpt:
    def f(o: GenOpts) -> None:
        o.extra_field = True

    return f


def gen_with_layer_bytes(b: bytes) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.layer_bytes = b

    return f


def gen_with_layer_count(n: int) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.layer_count = n

    return f


def gen_with_layer_media_type(mt: str) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.layer_media_type = mt

    return f


def gen_with_platform(p: dict[str, Any]) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.platform = p

    return f


def gen_with_platforms(ps: list[Optional[dict[str, Any]]]) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.platforms = ps

    return f


def gen_with_blob_size(n: int) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.blob_size = n

    return f


def gen_with_subject(subject: Descriptor) -> GenOpt:
    subj = subject.copy()

    def f(o: GenOpts) -> None:
        o.subject = subj

    return f


def gen_with_tag(tag: str) -> GenOpt:
    def f(o: GenOpts) -> None:
        o.tag = tag

    return f


def _apply(base: GenOpts, opts: tuple[GenOpt, ...] | list[GenOpt]) -> GenOpts:
    for o in opts:
        o(base)
    return base


# --- testData --------------------------------------------------------------------------


class TestData:
    """``testData``: one named data set."""

    __test__ = False  # not a test class

    def __init__(self, name: str) -> None:
        self.name = name
        self.tags: dict[str, str] = {}
        self.tag_pushed: dict[str, bool] = {}
        self.desc: dict[str, Descriptor] = {}
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.man_order: list[str] = []
        self.referrers: dict[str, list[Descriptor]] = {}
        self.pull_opts: dict[str, list[Opt]] = {}
        self.push_opts: dict[str, list[Opt]] = {}

    def add_blob(self, b: bytes, *opts: GenOpt) -> str:
        g = _apply(GenOpts(algo="sha256", descriptor_media_type=MT_OCTET_STREAM), opts)
        dig = digest_of(b, g.algo)
        self.blobs[dig] = b
        self.desc[dig] = Descriptor(g.descriptor_media_type, dig, len(b))
        if g.set_data:
            self.desc[dig].data = b
        return dig

    def gen_blob(self, *opts: GenOpt) -> tuple[str, bytes]:
        g = _apply(GenOpts(blob_size=2048), opts)
        b = secrets.token_bytes(g.blob_size)
        return self.add_blob(b, *opts), b

    def gen_layer(self, file_num: int, *opts: GenOpt) -> tuple[str, str, bytes]:
        """Returns (compressed digest, "uncompressed" digest, layer body).

        Upstream writes the tar into the compressed buffer only, so the
        uncompressed buffer stays empty and every diff_id is the digest of
        zero bytes; kept as is.
        """
        g = _apply(GenOpts(comp=COMP_GZIP, algo="sha256"), opts)
        rand_num = secrets.randbelow(2**63 - 1)
        file = (
            f"Conformance test file contents for file number {file_num}.\nTodays lucky number is {rand_num}\n"
        ).encode()
        tbuf = io.BytesIO()
        with tarfile.open(fileobj=tbuf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            info = tarfile.TarInfo(name=f"./conformance-{file_num}.txt")
            info.size = len(file)
            info.mode = 0o644
            info.mtime = 0
            tf.addfile(info, io.BytesIO(file))
        tar_bytes = tbuf.getvalue()
        if g.comp == COMP_GZIP:
            body_comp = gzip.compress(tar_bytes, mtime=0)
            mt = MT_OCI_LAYER_GZ
        else:
            body_comp = tar_bytes
            mt = MT_OCI_LAYER
        body_uncomp = b""
        dig_comp = digest_of(body_comp, g.algo)
        dig_uncomp = digest_of(body_uncomp, g.algo)
        self.blobs[dig_comp] = body_comp
        self.desc[dig_comp] = Descriptor(mt, dig_comp, len(body_comp))
        if g.set_data:
            self.desc[dig_comp].data = body_comp
        self.desc[dig_uncomp] = Descriptor(MT_OCI_LAYER, dig_uncomp, len(body_uncomp))
        if g.set_data:
            self.desc[dig_uncomp].data = body_uncomp
        return dig_comp, dig_uncomp, body_comp

    def gen_config(self, p: dict[str, Any], layers: list[str], *opts: GenOpt) -> tuple[str, bytes]:
        g = _apply(GenOpts(algo="sha256", config_media_type=MT_OCI_CONFIG), opts)
        config: dict[str, Any] = {"author": "OCI Conformance Test"}
        config.update(platform_json(p))
        config["config"] = {}
        config["rootfs"] = {"type": "layers", "diff_ids": list(layers)}
        body = go_json(_with_extra_field(config) if g.extra_field else config)
        dig = digest_of(body, g.algo)
        self.blobs[dig] = body
        self.desc[dig] = Descriptor(g.config_media_type, dig, len(body))
        if g.set_data:
            self.desc[dig].data = body
        return dig, body

    def gen_manifest(self, conf: Descriptor, layers: list[Descriptor], *opts: GenOpt) -> tuple[str, bytes]:
        g = _apply(GenOpts(algo="sha256"), opts)
        annotations = g.annotations
        if g.annotation_uniq:
            annotations = {} if annotations is None else dict(annotations)
            annotations["org.example." + rand_text()] = rand_text()
        m: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_OCI_IMAGE}
        if g.artifact_type:
            m["artifactType"] = g.artifact_type
        m["config"] = conf.to_json()
        m["layers"] = [lay.to_json() for lay in layers]
        if g.subject is not None:
            m["subject"] = g.subject.to_json()
        if annotations:
            m["annotations"] = {k: annotations[k] for k in sorted(annotations)}
        body = go_json(_with_extra_field(m) if g.extra_field else m)
        dig = digest_of(body, g.algo)
        self.manifests[dig] = body
        self.man_order.append(dig)
        self.desc[dig] = Descriptor(MT_OCI_IMAGE, dig, len(body))
        if g.set_data:
            self.desc[dig].data = body
        at = g.artifact_type or conf.media_type
        if g.subject is not None:
            self.referrers.setdefault(g.subject.digest, []).append(
                Descriptor(MT_OCI_IMAGE, dig, len(body), annotations=annotations, artifact_type=at)
            )
        if g.tag:
            self.tags[g.tag] = dig
        return dig, body

    def gen_manifest_full(self, *opts: GenOpt) -> str:
        g = _apply(GenOpts(layer_count=2, platform={"os": "linux", "architecture": "amd64"}), opts)
        dig_c_list: list[str] = []
        dig_uc_list: list[str] = []
        for n in range(g.layer_count):
            if g.layer_media_type == "" or g.layer_media_type.startswith(MT_OCI_LAYER_PRE):
                dig_c, dig_uc, _ = self.gen_layer(n, *opts)
                dig_c_list.append(dig_c)
                dig_uc_list.append(dig_uc)
            else:
                l_opts = (gen_with_descriptor_media_type(g.layer_media_type), *opts)
                if g.layer_bytes is not None:
                    dig = self.add_blob(g.layer_bytes, *l_opts)
                else:
                    dig, _ = self.gen_blob(*l_opts)
                dig_c_list.append(dig)
                dig_uc_list.append(dig)
        if g.config_media_type in ("", MT_OCI_CONFIG):
            c_dig, _ = self.gen_config(g.platform, dig_uc_list, *opts)
        else:
            b_opts = (gen_with_descriptor_media_type(g.config_media_type), *opts)
            c_dig = self.add_blob(g.config_bytes if g.config_bytes is not None else b"", *b_opts)
        layers = [self.desc[d] for d in dig_c_list]
        m_dig, _ = self.gen_manifest(self.desc[c_dig], layers, *opts)
        return m_dig

    def gen_index(self, platforms: list[Optional[dict[str, Any]]], manifests: list[str], *opts: GenOpt) -> tuple[str, bytes]:
        g = _apply(GenOpts(algo="sha256"), opts)
        if len(platforms) != len(manifests):
            raise ValueError("genIndex requires the same number of platforms and layers")
        descs = []
        for p, m in zip(platforms, manifests):
            dsc = self.desc[m].copy()
            dsc.platform = p
            descs.append(dsc)
        annotations = g.annotations
        if g.annotation_uniq:
            annotations = {} if annotations is None else dict(annotations)
            annotations["org.example." + rand_text()] = rand_text()
        ind: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX}
        if g.artifact_type:
            ind["artifactType"] = g.artifact_type
        ind["manifests"] = [dsc.to_json() for dsc in descs]
        if g.subject is not None:
            ind["subject"] = g.subject.to_json()
        if annotations:
            ind["annotations"] = {k: annotations[k] for k in sorted(annotations)}
        body = go_json(_with_extra_field(ind) if g.extra_field else ind)
        dig = digest_of(body, g.algo)
        self.manifests[dig] = body
        self.man_order.append(dig)
        self.desc[dig] = Descriptor(MT_OCI_INDEX, dig, len(body))
        if g.set_data:
            self.desc[dig].data = body
        if g.subject is not None:
            self.referrers.setdefault(g.subject.digest, []).append(
                Descriptor(MT_OCI_INDEX, dig, len(body), annotations=annotations, artifact_type=g.artifact_type)
            )
        if g.tag:
            self.tags[g.tag] = dig
        return dig, body

    def gen_index_full(self, *opts: GenOpt) -> str:
        g = _apply(
            GenOpts(platforms=[{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}]),
            opts,
        )
        dig_img_list = []
        for p in g.platforms or []:
            m_dig = self.gen_manifest_full(gen_with_platform(p or {}), *opts)
            dig_img_list.append(m_dig)
        i_dig, _ = self.gen_index(list(g.platforms or []), dig_img_list, *opts)
        return i_dig
