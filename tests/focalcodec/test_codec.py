"""FocalCodec wrapper (focalcodec/codec.py): e2e parity, full-size layouts (causal included), checkpoints
(current, legacy, Hub, causal: focalcodec/pretrained.py, focalcodec/checkpoint.py), kNN, input checks
(focalcodec/checks.py)."""

import ast
import json

import pytest
import torch
from helpers.reference import (
    LISTING_DIR,
    assert_close,
    assert_matches_listing,
    assert_same_state,
    legacy_state_dict,
    load_reference,
    read_listing,
    reference_codec,
    seeded,
)
from safetensors.torch import load_file, save_file

from focalcodec.checkpoint import remap_legacy_state_dict
from focalcodec.codec import FocalCodec

E2E_FILES = ["focalcodec_e2e", "focalcodec_e2e_downscale"]
ALL_E2E_FILES = [*E2E_FILES, "focalcodec_stream_e2e"]  # the last: causal, WaveNeXt, 16 -> 24 kHz
ARGUMENTS = {
    f"{part}_{kind}"
    for part in ("encoder", "compressor", "quantizer", "decompressor", "decoder")
    for kind in ("name", "config")
}
QKV = "cat(q_proj,k_proj,v_proj)"


def assert_same_outputs(actual: FocalCodec, expected: FocalCodec, sig: torch.Tensor) -> None:
    """Bit-identical ``forward`` outputs."""
    with torch.no_grad():
        for got, want in zip(actual.eval()(sig), expected.eval()(sig), strict=True):
            assert torch.equal(got, want)


# --------------------------------------------------------------------------------------------------
# Parity with the upstream end-to-end vectors


@pytest.mark.parametrize("name", ALL_E2E_FILES)
def test_reference_weights_are_upstreams_initialisation_plus_noise(name: str) -> None:
    """The whole codec builds its parts in upstream's order: seed 0 plus noise gives the file's weights."""
    ref = load_reference(name)
    assert_same_state(seeded(FocalCodec, ref["config"], noise=0.05).state_dict(), ref["state_dict"])


@pytest.mark.parametrize("name", ALL_E2E_FILES)
def test_reference(name: str) -> None:
    model, ref = reference_codec(name)
    sig, length = ref["inputs"]["sig"], ref["inputs"].get("length")
    out = ref["outputs"]
    with torch.no_grad():
        # The documented calls, each from the signal or from the reference's own intermediate input.
        assert_close(model.sig_to_feats(sig), out["feats"])
        assert_close(model.sig_to_lats(sig), out["lats"])
        assert torch.equal(model.sig_to_toks(sig), out["toks"])
        assert torch.equal(model.toks_to_codes(out["toks"]), out["codes"])
        assert_close(model.codes_to_qfeats(out["codes"]), out["qfeats"])
        assert_close(model.toks_to_sig(out["toks"]), out["rec_sig_from_toks"])
        toks, codes, rec_sig = model(sig)
        assert torch.equal(toks, out["forward_toks"])
        assert torch.equal(codes, out["forward_codes"])
        assert_close(rec_sig, out["forward_rec_sig"])
        if length is not None:  # relative lengths: non-causal models only
            assert torch.equal(model.sig_to_toks(sig, length=length), out["toks_length"])
        # Single stages fed with reference intermediates.
        assert_close(model.feats_to_lats(out["feats"]), out["lats"])
        assert torch.equal(model.lats_to_toks(out["lats"]), out["toks"])
        assert torch.equal(model.lats_to_codes(out["lats"]), out["codes"])
        assert torch.equal(model.codes_to_toks(out["codes"]), out["toks"])
        assert_close(model.feats_to_sig(out["qfeats"]), out["rec_sig_from_toks"])
        # Compositions agree with the stages.
        assert torch.equal(model.feats_to_toks(out["feats"]), out["toks"])
        assert torch.equal(model.sig_to_codes(sig), out["codes"])
        assert_close(model.toks_to_qfeats(out["toks"]), out["qfeats"])
        assert_close(model.sig_to_qfeats(sig), out["qfeats"])
        assert_close(model.codes_to_sig(out["codes"]), out["rec_sig_from_toks"])
        assert torch.equal(model.sig_to_sig(sig), rec_sig)
    assert rec_sig.shape == (sig.shape[0], sig.shape[1] * model.sample_rate_output // model.sample_rate_input)
    assert out["rec_sig_from_toks"].shape[-1] == out["qfeats"].shape[1] * model.decoder.upsample_factor
    assert_close(out["lats"].norm(dim=-1), torch.ones(out["lats"].shape[:-1]))


# --------------------------------------------------------------------------------------------------
# Full-size layout and properties


@pytest.mark.parametrize(
    "name, num_parameters, downsample",
    [
        ("FocalCodec_50hz", 142_183_601, 1),
        ("FocalCodec_25hz", 144_280_753, 2),
        ("FocalCodec_12_5hz", 145_329_329, 4),
    ],
)
def test_full_size_listing(name: str, num_parameters: int, downsample: int) -> None:
    listing = read_listing(name)
    assert listing.num_parameters == num_parameters
    with torch.device("meta"):
        model = FocalCodec(**listing.kwargs)
    assert_matches_listing(model, listing)
    assert {key for key, _ in model.named_buffers()} <= set(listing.non_persistent)
    assert model.to_config() == listing.kwargs
    assert model.compressor.downsample_factor == model.decompressor.upsample_factor == downsample
    assert model.sample_rate_input == model.sample_rate_output == model.sample_rate == 16000
    assert not model.causal and model.latency is None
    assert model.codebook.shape == (8192, 13)


@pytest.mark.parametrize(
    ("name", "num_parameters", "bits"),
    [
        ("FocalCodec_50hz_65k_causal", 249_046_686, 16),
        ("FocalCodec_50hz_4k_causal", 249_038_490, 12),
        ("FocalCodec_50hz_2k_causal", 249_036_441, 11),
    ],
)
def test_full_size_causal_listing(name: str, num_parameters: int, bits: int) -> None:
    """The released causal models (config inferred from the recipe, see the listings' headers)."""
    listing = read_listing(name)
    assert listing.num_parameters == num_parameters and len(listing.entries) == 332
    with torch.device("meta"):
        model = FocalCodec(**listing.kwargs)
    assert_matches_listing(model, listing)
    assert {key for key, _ in model.named_buffers()} <= set(listing.non_persistent)
    assert model.to_config() == listing.kwargs
    assert type(model.decoder).__name__ == "WaveNeXt"
    assert model.causal and model.chunk_size == 1280 and model.latency == 80.0
    assert (model.sample_rate_input, model.sample_rate_output) == (16000, 24000)
    with pytest.raises(RuntimeError, match="differ"):
        model.sample_rate  # noqa: B018
    assert model.quantizer.dim == bits and model.token_rate == 50 and model.bitrate == 50 * bits
    # a checkpoint with exactly the listed keys and shapes loads strictly
    weights = {key: torch.empty(shape, device="meta") for key, (shape, _) in listing.entries.items()}
    model.load_state_dict(weights, strict=True, assign=True)


def test_properties_and_registry() -> None:
    model, ref = reference_codec("focalcodec_e2e")
    assert model.chunk_size == 1280 and not model.causal
    assert torch.equal(model.codebook[ref["outputs"]["toks"]], ref["outputs"]["codes"])

    config = ref["config"]
    for part in ("encoder", "compressor", "decompressor", "decoder"):
        config[f"{part}_config"]["causal"] = True
    causal = FocalCodec(**config).eval()
    assert causal.causal and causal.latency == 80.0  # one 1280-sample chunk at 16 kHz
    with torch.no_grad():
        assert causal(torch.randn(1, 5000))[2].shape == (1, 5000)  # full-sequence causal call

    config = {**ref["config"], "decoder_config": {**ref["config"]["decoder_config"], "hop_length": 160}}
    half_rate = FocalCodec(**config).eval()
    assert half_rate.sample_rate_output == 8000
    with pytest.raises(RuntimeError, match="differ"):
        half_rate.sample_rate  # noqa: B018
    with torch.no_grad():
        assert half_rate(torch.randn(1, 4000))[2].shape == (1, 2000)

    with torch.device("meta"):
        default = FocalCodec()  # upstream's defaults: a non-causal WaveNeXt decoder at 24 kHz
    assert type(default.decoder).__name__ == "WaveNeXt" and default.sample_rate_output == 24000
    assert not default.causal and default.latency is None
    with pytest.raises(ValueError, match="encoder_name='HuBERT' is not supported"):
        FocalCodec(encoder_name="HuBERT", decoder_name="Vocos")


# --------------------------------------------------------------------------------------------------
# Checkpoints: official format, overrides, Hub errors


def test_to_pretrained_round_trip(tmp_path) -> None:
    model, ref = reference_codec("focalcodec_e2e_downscale")
    sig = ref["inputs"]["sig"]
    folder = model.to_pretrained(tmp_path / "codec")
    assert sorted(path.name for path in folder.iterdir()) == [
        "config.json",
        "model.json",
        "model.safetensors",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert set(config) == ARGUMENTS and config == ref["config"] == model.to_config()
    assert json.loads((folder / "model.json").read_text()) == config
    weights = load_file(folder / "model.safetensors")
    assert sorted(weights) == sorted(model.state_dict())
    assert {value.dtype for value in weights.values()} == {torch.float32}

    for location in (folder, str(folder), folder / "config.json", folder / "model", f"{folder}/model"):
        loaded = FocalCodec.from_pretrained(location)
        assert_same_state(loaded.state_dict(), model.state_dict())
        assert_same_outputs(loaded, model, sig)

    # model.pt fallback
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "model.safetensors").unlink()
    loaded = FocalCodec.from_pretrained(folder)
    assert_same_state(loaded.state_dict(), model.state_dict())
    (folder / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors, model\.pt"):
        FocalCodec.from_pretrained(folder)
    # from_config without weights: the architecture only
    assert FocalCodec.from_config(folder).to_config() == model.to_config()
    assert FocalCodec.from_config(ref["config"]).to_config() == model.to_config()


def test_causal_checkpoint_round_trip(tmp_path) -> None:
    """A causal (FocalCodec-Stream style) model in the released format opens strictly and streams the same."""
    model, ref = reference_codec("focalcodec_stream_e2e")
    folder = model.to_pretrained(tmp_path / "causal")
    config = json.loads((folder / "config.json").read_text())
    assert config == ref["config"] and config["decoder_name"] == "WaveNeXt"
    loaded = FocalCodec.from_pretrained(folder).eval()
    assert_same_state(loaded.state_dict(), model.state_dict())
    assert loaded.causal and loaded.latency == 80.0
    state, toks = [], []
    with torch.no_grad():
        for chunk in ref["inputs"]["sig"].split(loaded.chunk_size, dim=1):
            toks_i, _, _, *state = loaded(chunk, *state, return_state=True)
            toks.append(toks_i)
    assert torch.equal(torch.cat(toks, dim=1), ref["outputs"]["stream_toks"])
    weights = load_file(folder / "model.safetensors")
    weights.pop("decompressor.refiner.in_proj.weight")
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(RuntimeError, match="refiner"):  # strict
        FocalCodec.from_pretrained(folder)


def upstream_local_from_pretrained(stem: str) -> FocalCodec:
    """What upstream's ``FocalCodec.from_pretrained(<local path>)`` does (focalcodec @ 912b7f2): the path
    is a stem, ``<stem>.json`` holds the ten arguments, ``<stem>.safetensors`` the weights (strict)."""
    with open(f"{stem}.json") as stream:
        model = FocalCodec(**json.load(stream))
    model.load_state_dict(load_file(f"{stem}.safetensors"), strict=True)
    return model


def test_export_opens_with_upstreams_local_convention(tmp_path) -> None:
    """The call the README shows for the upstream package, on what ``to_pretrained`` writes."""
    model, ref = reference_codec("focalcodec_e2e")
    model.to_pretrained(tmp_path / "my_codec")
    loaded = upstream_local_from_pretrained(f"{tmp_path}/my_codec/model")
    assert_same_outputs(loaded, model, ref["inputs"]["sig"])
    with torch.no_grad():
        assert torch.equal(loaded.eval().sig_to_toks(ref["inputs"]["sig"]), ref["outputs"]["toks"])


def test_overrides(tmp_path) -> None:
    model, ref = reference_codec("focalcodec_e2e")
    folder = model.to_pretrained(tmp_path / "codec")
    loaded = FocalCodec.from_pretrained(folder, overrides={"encoder_config.max_cached_steps": 0})
    assert loaded.encoder.max_cached_steps == 0
    assert loaded.to_config()["encoder_config"]["max_cached_steps"] == 0
    assert_same_outputs(loaded, model, ref["inputs"]["sig"])
    built = FocalCodec.from_config(ref["config"], overrides={"decoder_config.hop_length": 160})
    assert built.sample_rate_output == 8000
    with pytest.raises(ValueError, match="'encoder' is not one of"):
        FocalCodec.from_pretrained(folder, overrides={"encoder.dim": 8})
    with pytest.raises(ValueError, match="'encoder_name' is not a dict"):
        FocalCodec.from_pretrained(folder, overrides={"encoder_name.dim": 8})


def test_unreachable_hub(monkeypatch, tmp_path) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for location in ("lucadellalib/focalcodec_50hz", "lucadellalib/focalcodec_50hz/config.json"):
        with pytest.raises(OSError, match=r"'lucadellalib/focalcodec_50hz'(.|\n)*pass that folder"):
            FocalCodec.from_pretrained(location, cache_dir=tmp_path)
    with pytest.raises(OSError, match="not a local folder"):
        FocalCodec.from_pretrained(str(tmp_path / "missing"), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="pretrained=True needs a checkpoint location"):
        FocalCodec.from_config(load_reference("focalcodec_e2e")["config"], pretrained=True)


# --------------------------------------------------------------------------------------------------
# Legacy (Feb 2025) checkpoints


def read_legacy_map() -> tuple[dict[str, tuple[tuple[int, ...], str]], list[str]]:
    """The legacy key map: current key -> (shape, legacy source), and the dropped legacy keys."""
    mapping, dropped = {}, []
    for line in (LISTING_DIR / "FocalCodec_50hz_legacy_key_map.txt").read_text().splitlines():
        if line.startswith("#   "):
            dropped.append(line[1:].split("\t")[0].strip())
        elif line and not line.startswith("#"):
            key, shape, source = line.split("\t")
            mapping[key] = (ast.literal_eval(shape), source.removeprefix("<- "))
    return mapping, dropped


def test_legacy_remap_full_size() -> None:
    mapping, dropped = read_legacy_map()
    with torch.device("meta"):
        model = FocalCodec(**read_listing("FocalCodec_50hz").kwargs)
    state = model.state_dict()
    assert list(mapping) == list(state)
    assert all(tuple(state[key].shape) == shape for key, (shape, _) in mapping.items())

    sources = {
        key: [key.replace("qkv_proj", p) for p in ("q_proj", "k_proj", "v_proj")]
        if source == QKV
        else [source]
        for key, (_, source) in mapping.items()
    }
    legacy_keys = [key for keys in sources.values() for key in keys] + dropped
    assert len(legacy_keys) == len(set(legacy_keys)) == 355
    assert sorted(legacy_keys) == sorted(legacy_state_dict(model))  # the helper is faithful

    tags = {key: torch.tensor([float(i)]) for i, key in enumerate(legacy_keys)}
    remapped = remap_legacy_state_dict(tags, state.keys())
    assert sorted(remapped) == sorted(state)
    for key, keys in sources.items():
        assert torch.equal(remapped[key], torch.cat([tags[source] for source in keys])), key


@pytest.mark.parametrize("name", E2E_FILES)
def test_legacy_checkpoint(name: str, tmp_path) -> None:
    model, ref = reference_codec(name)
    folder = tmp_path / "legacy"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(ref["config"]))
    save_file(legacy_state_dict(model), folder / "model.safetensors")
    loaded = FocalCodec.from_pretrained(folder)
    assert_same_state(loaded.state_dict(), model.state_dict())
    assert_same_outputs(loaded, model, ref["inputs"]["sig"])


# --------------------------------------------------------------------------------------------------
# Decoding options


def test_output_length() -> None:
    model, ref = reference_codec("focalcodec_e2e")
    toks = ref["outputs"]["toks"]
    with torch.no_grad():
        full = model.toks_to_sig(toks)
        cut = model.toks_to_sig(toks, output_length=1000)
        padded = model.toks_to_sig(toks, output_length=full.shape[1] + 77)
    assert torch.equal(cut, full[:, :1000])
    assert torch.equal(padded[:, : full.shape[1]], full)
    assert torch.equal(padded[:, full.shape[1] :], full[:, -1:].expand(-1, 77))


def test_knn_matching() -> None:
    """kNN-VC replaces every frame by the mean of its ``topk`` cosine-nearest rows (see test_knn.py)."""
    model, ref = reference_codec("focalcodec_e2e")
    qfeats = ref["outputs"]["qfeats"]
    torch.manual_seed(0)
    matching_set = torch.randn(30, qfeats.shape[-1])
    with torch.no_grad():
        sig = model.feats_to_sig(qfeats, matching_set=matching_set, topk=4, output_length=16000)
        neighbors = model.knn(qfeats, matching_set, topk=4)
        split = model.knn(qfeats, matching_set, topk=4, num_splits=7)
        manual = model.feats_to_sig(neighbors.mean(dim=-2), output_length=16000)
        itself = model.feats_to_sig(qfeats[:1], matching_set=qfeats[0], topk=1)
        plain = model.feats_to_sig(qfeats[:1])
        everything = model.knn(qfeats, matching_set, topk=100)
    assert sig.shape == (2, 16000) and torch.equal(sig, manual)
    similarity = (
        torch.nn.functional.normalize(qfeats, dim=-1) @ torch.nn.functional.normalize(matching_set, dim=-1).T
    )
    assert neighbors.shape == (2, 49, 4, 64)
    assert torch.equal(neighbors, matching_set[similarity.topk(4, dim=-1).indices])  # nearest first
    assert torch.equal(split, neighbors)
    assert torch.equal(itself, plain)  # each frame is its own nearest neighbour
    assert everything.shape == (2, 49, 30, 64)  # topk is capped at M
    assert_close(everything.mean(dim=-2), matching_set.mean(dim=0).expand_as(qfeats))


# --------------------------------------------------------------------------------------------------
# Input checks


@pytest.mark.parametrize(
    "method, args, kwargs, error, message",
    [
        ("sig_to_toks", (torch.randn(16000),), {}, ValueError, r"1-D tensor of 16000 samples.*sig\[None\]"),
        ("sig_to_toks", (torch.randn(1, 2, 800),), {}, ValueError, r"mono.*sig.mean\(dim=1\)"),
        ("sig_to_toks", (torch.randint(0, 9, (1, 800)),), {}, ValueError, "floating-point"),
        ("sig_to_toks", (torch.randn(1, 0),), {}, ValueError, r"N >= 1"),
        ("sig_to_toks", ([0.0] * 800,), {}, TypeError, "torch.Tensor"),
        (
            "sig_to_toks",
            (torch.randn(2, 800),),
            {"length": torch.ones(3)},
            ValueError,
            r"length must.*\(2,\)",
        ),
        (
            "sig_to_toks",
            (torch.randn(2, 800),),
            {"length": torch.tensor([1.0, 0.0])},
            ValueError,
            r"\(0, 1\]",
        ),
        (
            "sig_to_toks",
            (torch.randn(2, 800),),
            {"length": torch.tensor([1.5, 0.5])},
            ValueError,
            r"\(0, 1\]",
        ),
        ("sig_to_toks", (torch.randn(2, 800),), {"length": torch.tensor([800, 400])}, ValueError, "floating"),
        ("sig_to_toks", (torch.randn(2, 800), torch.ones(2)), {}, TypeError, r"encoder_state.*by keyword"),
        ("feats_to_lats", (torch.randn(49, 64),), {}, ValueError, r"\(B, T, 64\).*feats\[None\]"),
        ("feats_to_lats", (torch.randn(1, 49, 32),), {}, ValueError, r"\(B, T, 64\)"),
        ("lats_to_toks", (torch.randn(1, 49, 12),), {}, ValueError, r"\(B, T, 13\)"),
        ("toks_to_codes", (torch.rand(1, 49),), {}, ValueError, "integer tensor"),
        ("toks_to_codes", (torch.tensor([[0, 8192]]),), {}, ValueError, r"\[0, 8192\).*\[0, 8192\]"),
        ("toks_to_codes", (torch.tensor([[-1, 3]]),), {}, ValueError, r"\[0, 8192\)"),
        ("toks_to_sig", (torch.tensor([1, 2, 3]),), {}, ValueError, r"\(B, T\).*toks\[None\]"),
        ("codes_to_qfeats", (torch.randn(1, 49, 12),), {}, ValueError, r"\(B, T, 13\)"),
        ("codes_to_qfeats", (torch.randn(1, 0, 13),), {}, ValueError, r"T >= 1"),
        ("codes_to_toks", (torch.randn(49, 13),), {}, ValueError, r"codes\[None\]"),
        (
            "feats_to_sig",
            (torch.randn(1, 5, 64),),
            {"matching_set": torch.randn(5, 32)},
            ValueError,
            r"\(M, 64\)",
        ),
        (
            "feats_to_sig",
            (torch.randn(1, 5, 32),),
            {"matching_set": torch.randn(5, 32)},
            ValueError,
            r"B, T, 64",
        ),
        (
            "feats_to_sig",
            (torch.randn(1, 5, 64),),
            {"matching_set": torch.randn(5, 64), "topk": 0},
            ValueError,
            "topk",
        ),
        (
            "feats_to_sig",
            (torch.randn(1, 5, 64),),
            {"matching_set": torch.randn(5, 64), "num_splits": 6},
            ValueError,
            "num_splits",
        ),
        ("feats_to_sig", (torch.randn(1, 5, 64),), {"output_length": 0}, ValueError, "output_length"),
        (
            "feats_to_sig",
            (torch.randn(1, 5, 64), torch.randn(5, 64)),
            {},
            TypeError,
            r"decoder_state.*Tensor",
        ),
    ],
)
def test_input_checks(method: str, args: tuple, kwargs: dict, error: type, message: str) -> None:
    model, _ = reference_codec("focalcodec_e2e")
    with pytest.raises(error, match=message):
        getattr(model, method)(*args, **kwargs)
