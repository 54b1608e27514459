"""The frame tokenizer: shapes, training, VQ ids, determinism, freezing and safetensors round trips (tiny configs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wam.substrates.autoencoder import AutoencoderConfig, FrameAutoencoder

SIZE = 16


def tiny(quantize: bool) -> FrameAutoencoder:
    return FrameAutoencoder(AutoencoderConfig(image_size=SIZE, channels=(16, 32), latent_channels=4, quantize=quantize,
                                              codebook_size=16))


def smooth_frames(n: int, seed: int = 0) -> np.ndarray:
    """uint8 ``[n, SIZE, SIZE, 3]``: a few low-frequency sinusoids per channel, like blurry scenes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, SIZE), np.linspace(0, 1, SIZE), indexing="ij")
    freq, phase = rng.uniform(0.5, 2.0, (2, n, 1, 1, 3)), rng.uniform(0, 2 * np.pi, (2, n, 1, 1, 3))
    img = 0.5 + 0.25 * np.sin(2 * np.pi * freq[0] * yy[..., None] + phase[0]) * np.cos(
        2 * np.pi * freq[1] * xx[..., None] + phase[1])
    return (img * 255).round().astype(np.uint8)


def as_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("quantize", [False, True])
def test_shapes(quantize):
    ae = tiny(quantize)
    assert ae.grid == (4, 4)
    x = as_tensor(smooth_frames(5))
    latents = ae.encode(x)
    assert latents.shape == (5, 4, 4, 4)
    out = ae.decode(latents)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    if quantize:
        ids = ae.encode_ids(x)
        assert ids.shape == (5, 16) and ids.dtype == torch.long
        assert ae.embed_ids(ids.view(1, 5, 16)).shape == (1, 5, 4, 4, 4)


@pytest.mark.parametrize("quantize", [False, True])
def test_fit_lowers_reconstruction_and_freezes(quantize):
    ae = tiny(quantize)
    frames = smooth_frames(64)
    history = ae.fit(frames, steps=30, batch_size=32, lr=1e-2, progress=False)
    assert len(history) <= 30 and history[-1]["step"] == 30
    assert history[-1]["recon"] < 0.7 * history[0]["recon"]
    x = as_tensor(frames)
    assert ((ae.decode(ae.encode(x)) - x) ** 2).mean() < ((x - x.mean(0)) ** 2).mean()  # beats the mean image
    assert not ae.training and all(not p.requires_grad for p in ae.parameters())


def test_vq_ids_round_trip():
    ae = tiny(True)
    history = ae.fit(smooth_frames(64), steps=60, batch_size=32, progress=False)  # past one dead-code restart
    assert 0 < history[-1]["usage"] <= 1 and history[-1]["restarts"] >= 0
    x = as_tensor(smooth_frames(8, seed=1))
    ids = ae.encode_ids(x)
    assert ids.min() >= 0 and ids.max() < 16
    assert torch.equal(ae.embed_ids(ids), ae.encode(x))


@pytest.mark.parametrize("quantize", [False, True])
def test_fit_is_seeded_and_leaves_global_rng_alone(quantize):
    frames, states = smooth_frames(32), []
    for seed in (0, 0, 1):
        torch.manual_seed(seed + 100)  # a different initialization: fit must start from its own seed
        ae = tiny(quantize)
        rng = torch.get_rng_state()
        ae.fit(frames, steps=55 if quantize else 5, batch_size=8, seed=seed, progress=False)  # VQ: past a restart
        assert torch.equal(torch.get_rng_state(), rng)
        states.append(ae.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_vae_has_no_ids():
    ae = tiny(False)
    with pytest.raises(ValueError, match="quantize=True"):
        ae.encode_ids(as_tensor(smooth_frames(2)))
    with pytest.raises(ValueError, match="quantize=True"):
        ae.embed_ids(torch.zeros(2, 16, dtype=torch.long))


def test_fit_rejects_channels_first_floats():
    with pytest.raises(ValueError, match="uint8"):
        tiny(False).fit(as_tensor(smooth_frames(4)).numpy(), steps=1, progress=False)


@pytest.mark.parametrize("quantize", [False, True])
def test_safetensors_round_trip(tmp_path, quantize):
    from safetensors.torch import load_file, save_file

    ae = tiny(quantize)
    ae.fit(smooth_frames(32), steps=5, batch_size=8, progress=False)
    save_file(ae.state_dict(), tmp_path / "ae.safetensors")
    loaded = tiny(quantize)
    loaded.load_state_dict(load_file(tmp_path / "ae.safetensors"))
    loaded.eval()
    x = as_tensor(smooth_frames(4, seed=2))
    assert torch.equal(loaded.scale, ae.scale) and loaded.scale != 1
    assert torch.equal(loaded.decode(loaded.encode(x)), ae.decode(ae.encode(x)))
