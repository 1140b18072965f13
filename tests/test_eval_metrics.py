"""FVD/KVD/FID/IS/CLIPSIM maths against closed forms; I3D, C3D, CLIP and Inception with random weights.

Real-weight checks run only where a person placed the files (eval_data.md §8.4): ``DYSEN_I3D_WEIGHTS``,
``DYSEN_C3D_WEIGHTS`` (+ ``DYSEN_C3D_MEAN`` for TGANv2's npz), ``DYSEN_CLIP_MODEL``, ``DYSEN_INCEPTION_WEIGHTS``.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from dysen.eval.features.c3d import C3D, c3d_probs, load_c3d
from dysen.eval.features.clip import ClipEmbedder, clip_embeddings
from dysen.eval.features.frames import VideoInputError, video_tensor
from dysen.eval.features.i3d import I3DExtractor, InceptionI3d, i3d_features, load_i3d
from dysen.eval.features.inception import FIDInceptionV3, inception_features, load_inception
from dysen.eval.metrics import (
    MetricError,
    clipsim,
    feature_stats,
    fid_from_features,
    frechet_distance,
    fvd_from_features,
    inception_score,
    kvd_from_features,
)
from dysen.models.pretrained import CheckpointError


def _gaussian(rng: np.random.Generator, n: int, dim: int, shift: float = 0.0) -> np.ndarray:
    """n samples of a fixed correlated Gaussian in ``dim`` dimensions, with mean ``shift``."""
    mixing = np.random.default_rng(dim).normal(size=(dim, dim)) / np.sqrt(dim)  # one covariance per dim
    return rng.normal(size=(n, dim)) @ mixing + shift  # [n, dim]


# --- Fréchet distance ---------------------------------------------------------------------------------------------


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.1, 3.0, size=6), rng.uniform(0.1, 3.0, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_is_zero_for_identical_stats_and_symmetric():
    rng = np.random.default_rng(1)
    mu_a, sigma_a = feature_stats(_gaussian(rng, 500, 32))
    mu_b, sigma_b = feature_stats(_gaussian(rng, 500, 32, shift=0.3))
    assert frechet_distance(mu_a, sigma_a, mu_a, sigma_a) < 1e-6
    forward, backward = frechet_distance(mu_a, sigma_a, mu_b, sigma_b), frechet_distance(mu_b, sigma_b, mu_a, sigma_a)
    assert forward == pytest.approx(backward, rel=1e-9) and forward > 1.0


@pytest.mark.parametrize("n", [2, 16, 63])
def test_frechet_distance_with_fewer_samples_than_dims_is_zero_for_the_same_set_and_never_negative(n):
    rng = np.random.default_rng(n)
    x = _gaussian(rng, n, 64) * 30.0  # rank-deficient covariance, logit-like scale
    assert 0.0 <= fvd_from_features(x, x) < 1e-6
    assert fvd_from_features(x, x + 1e-9 * rng.normal(size=x.shape)) >= 0.0
    assert fvd_from_features(x, _gaussian(rng, n, 64) * 30.0) > 0.0


def test_frechet_distance_agrees_with_the_eigvals_and_sqrtm_forms():
    rng = np.random.default_rng(2)
    mu1, sigma1 = feature_stats(_gaussian(rng, 300, 40))
    mu2, sigma2 = feature_stats(_gaussian(rng, 300, 40, shift=0.5))
    ours = frechet_distance(mu1, sigma1, mu2, sigma2)
    base = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)
    eigvals_form = base - 2 * np.sqrt(np.linalg.eigvals(sigma1 @ sigma2).astype(complex)).real.sum()  # torchmetrics
    assert ours == pytest.approx(eigvals_form, rel=1e-8)
    linalg = pytest.importorskip("scipy.linalg")
    assert ours == pytest.approx(base - 2 * np.trace(linalg.sqrtm(sigma1 @ sigma2)).real, rel=1e-6)


def test_frechet_distance_of_large_samples_approaches_the_analytic_value():
    rng = np.random.default_rng(3)
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, -1.0])
    var1, var2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 2.0, 1.0])
    x = rng.normal(size=(200_000, 3)) * np.sqrt(var1) + mu1
    y = rng.normal(size=(200_000, 3)) * np.sqrt(var2) + mu2
    analytic = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert fid_from_features(x, y) == pytest.approx(analytic, abs=0.02)


def test_feature_stats_use_the_unbiased_covariance_and_accept_tensors():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = feature_stats(x)
    assert mu.dtype == np.float64 and np.allclose(mu, [2.0, 4.0])
    assert np.allclose(sigma, np.cov(x.numpy().astype(np.float64), rowvar=False))


def test_metrics_reject_bad_shapes_and_values():
    with pytest.raises(MetricError, match="2 samples"):
        feature_stats(np.zeros((1, 4)))
    with pytest.raises(MetricError, match="shapes do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(MetricError, match="NaN"):
        fvd_from_features(np.full((4, 2), np.nan), np.zeros((4, 2)))


# --- KVD ----------------------------------------------------------------------------------------------------------


def test_kvd_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    rng = np.random.default_rng(4)
    x, y = _gaussian(rng, 400, 16), _gaussian(rng, 400, 16)
    shifted = kvd_from_features(x, y + 1.0)
    assert shifted > 0.1
    assert abs(kvd_from_features(x, x)) < 1e-2 * shifted
    assert abs(kvd_from_features(x, y)) < 1e-2 * shifted


def test_kvd_matches_the_unbiased_mmd_formula_and_subsets_are_seeded():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 0.5
    k = lambda a, b: (a @ b.T / 3 + 1) ** 3  # noqa: E731
    expected = (k(x, x).sum() - np.trace(k(x, x))) / 20 + (k(y, y).sum() - np.trace(k(y, y))) / 12 - 2 * k(x, y).mean()
    assert kvd_from_features(x, y) == pytest.approx(expected, rel=1e-12)
    first = kvd_from_features(x, y, num_subsets=7, subset_size=3, seed=1)
    assert first == kvd_from_features(x, y, num_subsets=7, subset_size=3, seed=1)
    with pytest.raises(MetricError, match="subset_size"):
        kvd_from_features(x, y, subset_size=5)


# --- Inception Score ----------------------------------------------------------------------------------------------


def test_inception_score_is_one_for_uniform_predictions():
    mean, std = inception_score(np.full((200, 101), 1 / 101), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("classes", [1, 5, 101])
def test_inception_score_is_k_for_one_hot_predictions_spread_over_k_classes(classes):
    probs = np.tile(np.eye(classes), (20, 1))  # every contiguous split holds each class equally often
    mean, std = inception_score(probs, splits=4 if classes > 1 else 1)
    assert mean == pytest.approx(classes, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_is_invariant_to_order_within_one_split_and_validates_input():
    probs = torch.softmax(torch.randn(64, 10, generator=torch.Generator().manual_seed(0)), dim=1)
    assert inception_score(probs, splits=1)[0] == pytest.approx(inception_score(probs.flip(0), splits=1)[0])
    with pytest.raises(MetricError, match="splits"):
        inception_score(probs, splits=65)
    with pytest.raises(MetricError, match="softmax"):
        inception_score(probs * 2, splits=1)


# --- CLIPSIM ------------------------------------------------------------------------------------------------------


def test_clipsim_is_the_raw_mean_cosine():
    text = np.eye(4)[:2]  # [2, 4]
    same = np.repeat(text[:, None] * 3.0, 5, axis=1)  # [2, 5, 4], any norm
    orthogonal = np.repeat(np.eye(4)[2:][:, None], 5, axis=1)
    assert clipsim(same, text) == pytest.approx(1.0)
    assert clipsim(orthogonal, text) == pytest.approx(0.0)
    assert clipsim(-same, text) == pytest.approx(-1.0)  # not clamped at 0, not ×100
    mixed = np.concatenate([same[:, :1], orthogonal[:, :3]], axis=1)  # 1 matching frame of 4
    assert clipsim(mixed, text) == pytest.approx(0.25)
    with pytest.raises(MetricError, match="text_embeddings"):
        clipsim(same, text[:1])


# --- video input --------------------------------------------------------------------------------------------------


def test_video_tensor_maps_uint8_to_unit_range_and_repeats_grayscale():
    video = np.zeros((1, 2, 4, 4), dtype=np.uint8)
    video[0, 1] = 255
    x = video_tensor(video)  # [1, 3, 2, 4, 4]
    assert x.shape == (1, 3, 2, 4, 4) and x[:, :, 0].eq(-1).all() and x[:, :, 1].eq(1).all()
    with pytest.raises(VideoInputError, match=r"\[-1, 1\]"):
        video_tensor(np.full((1, 2, 4, 4, 3), 200.0))


# --- I3D ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def i3d() -> InceptionI3d:
    torch.manual_seed(0)
    return InceptionI3d().eval()


@pytest.mark.slow
def test_i3d_gives_400_logits_for_16_frames_at_224(i3d):
    video = np.random.default_rng(0).integers(0, 256, size=(1, 16, 32, 32, 3), dtype=np.uint8)
    features = i3d_features(np.concatenate([video, video]), i3d)  # resized to [2, 3, 16, 224, 224]
    assert features.shape == (2, 400) and features.dtype == torch.float32 and torch.isfinite(features).all()
    assert torch.allclose(features[0], features[1], atol=1e-6) and features[0].abs().max() > 0  # deterministic


def test_i3d_rejects_clips_shorter_than_nine_frames(i3d):
    with pytest.raises(VideoInputError, match="at least 9 frames"):
        i3d_features(np.zeros((1, 8, 32, 32, 3), dtype=np.uint8), i3d)


def test_load_i3d_round_trips_a_tats_style_state_dict_and_checks_the_hash(i3d, tmp_path):
    state = {k: v for k, v in i3d.state_dict().items() if not k.endswith("num_batches_tracked")}  # as TATS saves it
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(state, path)
    loaded = load_i3d(path)
    assert isinstance(loaded, I3DExtractor) and not loaded.torchscript and len(loaded.sha256) == 64
    assert all(torch.equal(v, loaded.network.state_dict()[k]) for k, v in state.items())
    assert load_i3d(path, expected_sha256=loaded.sha256.upper()).sha256 == loaded.sha256
    with pytest.raises(CheckpointError, match="not the expected"):
        load_i3d(path, expected_sha256="0" * 64)
    torch.save({k: v for k, v in state.items() if not k.startswith("logits")}, path)
    with pytest.raises(CheckpointError, match="missing"):
        load_i3d(path)


class _Opaque:
    """Not a tensor: a weights-only load must refuse to build it."""


def test_load_i3d_refuses_pickled_objects_and_missing_files(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Opaque()}, path)
    with pytest.raises(CheckpointError, match="tensors-only"):
        load_i3d(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_i3d(tmp_path / "absent.pt")


class _ScriptedI3D(torch.nn.Module):
    """A stand-in with StyleGAN-V's TorchScript signature: features only with the right keywords."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 400)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False):
        features = self.proj(x.mean(dim=(2, 3, 4)))  # [B, 400]
        if rescale or resize or not return_features:
            return torch.zeros_like(features)
        return features


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_load_i3d_reads_a_torchscript_file_and_calls_it_with_stylegan_v_keywords(tmp_path):
    torch.manual_seed(0)
    network = _ScriptedI3D()
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(network).save(str(path))
    loaded = load_i3d(path)
    assert loaded.torchscript
    videos = np.full((2, 16, 8, 8, 3), 255, dtype=np.uint8)
    expected = network.proj(torch.ones(2, 3)).detach()  # white clips are all +1 after preprocessing
    assert torch.allclose(i3d_features(videos, loaded), expected, atol=1e-6)


# --- C3D ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def c3d() -> C3D:
    torch.manual_seed(0)
    model = C3D()
    model.mean.uniform_(80.0, 120.0)
    return model.eval()


def test_c3d_gives_101_probabilities_for_16_frames(c3d):
    videos = np.random.default_rng(0).integers(0, 256, size=(1, 16, 40, 40, 3), dtype=np.uint8)
    probs = c3d_probs(videos, c3d)  # resized to [1, 3, 16, 112, 112]
    assert probs.shape == (1, 101) and probs.dtype == torch.float64
    assert torch.allclose(probs.sum(dim=1), torch.ones(1, dtype=torch.float64))
    with pytest.raises(VideoInputError, match="exactly 16 frames"):
        c3d_probs(videos[:, :15], c3d)


@pytest.mark.slow
def test_load_c3d_reads_tgan2_chainer_npz_with_the_cropped_mean_and_torch_state_dicts(c3d, tmp_path):
    arrays = {}
    for key, value in c3d.state_dict().items():
        if key != "mean":
            layer, kind = key.split(".")
            arrays[f"{layer}/{'W' if kind == 'weight' else 'b'}"] = value.numpy()
    np.savez(tmp_path / "conv3d_deepnetA_ucf.npz", **arrays)
    mean = np.random.default_rng(0).uniform(0, 255, size=(3, 16, 128, 171)).astype(np.float32)
    np.savez(tmp_path / "mean2.npz", mean=mean)
    loaded = load_c3d(tmp_path / "conv3d_deepnetA_ucf.npz", mean_path=tmp_path / "mean2.npz")
    assert torch.equal(loaded.fc6.weight, c3d.fc6.weight) and loaded.fc6.in_features == 8192
    assert torch.equal(loaded.mean, torch.from_numpy(mean[:, :, 8:120, 8:120]))
    with pytest.raises(CheckpointError, match="mean_path"):
        load_c3d(tmp_path / "conv3d_deepnetA_ucf.npz")
    torch.save(loaded.state_dict(), tmp_path / "c3d.pt")
    again = load_c3d(tmp_path / "c3d.pt")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert again.sha256 is not None and again.sha256 != loaded.sha256


# --- CLIP ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    """A random tiny CLIPModel (32×32 images) and a character-level tokenizer, saved as a processor folder."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    letters = string.ascii_lowercase
    vocab = {
        p: i for i, p in enumerate(["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)])
    }
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    text = dict(
        tower, vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1
    )
    torch.manual_seed(0)
    vision = dict(tower, image_size=32, patch_size=16)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    return str(folder)


def test_clip_embeddings_are_unit_vectors_per_frame_and_prompt(tiny_clip):
    videos = np.random.default_rng(0).integers(0, 256, size=(2, 3, 40, 48, 3), dtype=np.uint8)
    frames, texts = clip_embeddings(videos, ["a red circle", "a blue square"], ClipEmbedder(tiny_clip, batch_size=4))
    assert frames.shape == (2, 3, 16) and texts.shape == (2, 16)
    assert torch.allclose(frames.norm(dim=-1), torch.ones(2, 3)) and torch.allclose(texts.norm(dim=-1), torch.ones(2))
    float_frames, _ = clip_embeddings(videos / 127.5 - 1.0, ["a", "b"], ClipEmbedder(tiny_clip))
    assert torch.allclose(float_frames, frames, atol=1e-5)  # [-1, 1] floats are rounded back to the same uint8
    assert -1.0 <= clipsim(frames, texts) <= 1.0


def test_clip_loads_lazily_and_says_what_is_missing(tmp_path):
    embedder = ClipEmbedder(tmp_path / "nowhere")  # nothing loads yet
    with pytest.raises(CheckpointError, match="cannot load CLIP"):
        embedder.texts(["a"])


# --- Inception (FID) ----------------------------------------------------------------------------------------------


def test_inception_gives_2048_pool_features_and_loads_pytorch_fid_state_dicts(tmp_path):
    torch.manual_seed(0)
    model = FIDInceptionV3().eval()
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 48, 64, 3), dtype=np.uint8)
    features = inception_features(frames, model)  # resized to [2, 3, 299, 299]
    assert features.shape == (2, 2048) and (features >= 0).all()  # an average of ReLU outputs
    state = dict(model.state_dict(), **{"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)})
    torch.save(state, tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    loaded = load_inception(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    assert torch.equal(inception_features(frames, loaded), features)


# --- real weights (skipped unless a person placed the files) ------------------------------------------------------


def _weights(variable: str) -> Path:
    value = os.environ.get(variable)
    if not value or not Path(value).exists():
        pytest.skip(f"{variable} does not name a weight file here (no weights are downloaded; eval_data.md §4)")
    return Path(value)


@pytest.mark.slow
@pytest.mark.parametrize(("frames", "golden"), [(15, 131.0), (30, 151.3)])
def test_real_i3d_fvd_of_black_versus_white_clips_matches_the_reference(frames, golden):
    """TF example (16 × 15 frames, zeros vs 255: ≈ 131) and common_metrics demo (30 frames: ≈ 151.3), §8.4.

    Constant clips are identical within each set, so FVD = ‖μ₀ − μ₂₅₅‖² and one clip per set suffices.
    """
    model = load_i3d(_weights("DYSEN_I3D_WEIGHTS"))
    black, white = np.zeros((1, frames, 64, 64, 3), np.uint8), np.full((1, frames, 64, 64, 3), 255, np.uint8)
    features = i3d_features(np.concatenate([black, white]), model).double()  # [2, 400]
    fvd = fvd_from_features(features[:1].repeat(16, 1), features[1:].repeat(16, 1))
    print(f"I3D sha256={model.sha256} torchscript={model.torchscript} FVD={fvd:.3f}")
    assert fvd == pytest.approx(golden, abs=2.0)


def test_real_c3d_loads_and_gives_confident_valid_probabilities():
    """No published golden IS is at hand (eval_data.md §2); this checks the load and the output's sanity."""
    mean = os.environ.get("DYSEN_C3D_MEAN")
    model = load_c3d(_weights("DYSEN_C3D_WEIGHTS"), mean_path=mean or None)
    videos = np.random.default_rng(0).integers(0, 256, size=(2, 16, 128, 128, 3), dtype=np.uint8)
    probs = c3d_probs(videos, model)
    print(f"C3D sha256={model.sha256} max prob={probs.max().item():.3f}")
    assert torch.allclose(probs.sum(dim=1), torch.ones(2, dtype=torch.float64)) and probs.max() > 1 / 101


def test_real_clip_prefers_the_matching_colour():
    embedder = ClipEmbedder(os.environ.get("DYSEN_CLIP_MODEL") or pytest.skip("DYSEN_CLIP_MODEL is not set"))
    red = np.zeros((1, 4, 224, 224, 3), np.uint8)
    red[..., 0] = 255
    frames, texts = clip_embeddings(np.concatenate([red, red]), ["a red image", "a blue image"], embedder)
    match, mismatch = clipsim(frames[:1], texts[:1]), clipsim(frames[1:], texts[1:])
    print(f"CLIP {embedder.source}: red/red {match:.4f}, red/blue {mismatch:.4f}")
    assert 0.1 < match < 0.5 and match > mismatch


def test_real_inception_features_are_finite_pool3_vectors():
    model = load_inception(_weights("DYSEN_INCEPTION_WEIGHTS"))
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    features = inception_features(frames, model)
    print(f"Inception sha256={model.sha256}")
    assert features.shape == (2, 2048) and torch.isfinite(features).all() and (features >= 0).all()
