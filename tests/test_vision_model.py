"""3D ViT, structure queries, observer API and the CT-CLIP weight mapping."""

from __future__ import annotations

import pytest
import torch

from ctrg.models.ctclip_mapping import load_ctclip_visual, map_ctclip_visual
from ctrg.models.observer import (
    EmbeddingCentering,
    ObserverConfig,
    StructureObserver,
    load_stage1,
)
from ctrg.models.queries import StructureQueries
from ctrg.models.vision import PatchEmbed3d, VisionEncoder

SMALL = dict(
    volume_shape=(16, 32, 32),
    patch_shape=(4, 8, 8),
    vision_dim=32,
    vision_heads=2,
    vision_dim_head=16,
    spatial_depth=1,
    temporal_depth=1,
    query_dim=32,
    query_heads=2,
    embed_dim=24,
    text_dim=16,
)


def encoder(**kw) -> VisionEncoder:
    return VisionEncoder((16, 32, 32), (4, 8, 8), 32, 2, 16, kw.get("sd", 1), kw.get("td", 1))


def test_patch_order_is_depth_height_width():
    embed = PatchEmbed3d(1, (4, 8, 8), 8)
    volume = torch.arange(16 * 32 * 32, dtype=torch.float32).reshape(1, 1, 16, 32, 32)
    patches = embed.patchify(volume)
    assert patches.shape == (1, 4, 4, 4, 256)
    # patch (t=1, h=2, w=3) = voxels [4:8, 16:24, 24:32] flattened in (d, h, w) order
    assert torch.equal(patches[0, 1, 2, 3], volume[0, 0, 4:8, 16:24, 24:32].reshape(-1))


def test_encoder_shapes_and_grid():
    enc = encoder()
    assert enc.grid == (4, 4, 4) and enc.num_patches == 64
    out = enc(torch.randn(2, 1, 16, 32, 32))
    assert out.shape == (2, 64, 32) and torch.isfinite(out).all()


def test_indivisible_volume_is_rejected():
    with pytest.raises(ValueError, match="not divisible"):
        VisionEncoder((15, 32, 32), (4, 8, 8), 32, 2, 16, 1, 1)


def test_causal_position_generator_ignores_later_slabs_in_first_layer_conv():
    enc = encoder()
    grid = torch.zeros(1, 4, 4, 4, 32)
    later = grid.clone()
    later[:, 3] = 1.0  # change only the last slab
    peg = enc.spatial.layers[0].peg
    assert torch.equal(peg(grid)[:, :3], peg(later)[:, :3])


def test_queries_return_tokens_and_normalised_attention():
    queries = StructureQueries(10, 32, 4, layers=2)
    obs, patches, attention = queries(torch.randn(3, 64, 32))
    assert obs.shape == (3, 10, 32) and patches.shape == (3, 64, 32)
    assert attention.shape == (3, 4, 10, 64)
    assert torch.allclose(attention.sum(-1), torch.ones(3, 4, 10), atol=1e-5)


def test_observer_encode_volume_api():
    observer = StructureObserver(ObserverConfig(**SMALL))
    out = observer.encode_volume(torch.randn(2, 1, 16, 32, 32))
    assert out.observation_tokens.shape == (2, 10, 32)
    assert out.patch_tokens.shape == (2, 64, 32)
    assert out.attention.shape == (2, 2, 10, 64)
    assert out.observation_embeddings.shape == (2, 10, 24)
    assert torch.allclose(out.observation_embeddings.norm(dim=-1), torch.ones(2, 10), atol=1e-5)
    text = observer.encode_text(torch.randn(2, 10, 16))
    assert torch.allclose(text.norm(dim=-1), torch.ones(2, 10), atol=1e-5)
    with pytest.raises(ValueError, match="volume shape"):
        observer.encode_volume(torch.randn(1, 1, 16, 32, 24))


def test_global_query_has_one_token():
    observer = StructureObserver(ObserverConfig(**SMALL, queries="global"))
    assert observer.encode_volume(torch.randn(1, 1, 16, 32, 32)).observation_tokens.shape == (
        1,
        1,
        32,
    )


def test_load_stage1_round_trip(tmp_path):
    from ctrg.models.observer import observer_config_dict

    observer = StructureObserver(ObserverConfig(**SMALL)).eval()
    path = tmp_path / "model.pt"
    torch.save(
        {
            "model": observer.state_dict(),
            "observer": observer_config_dict(observer.config),
            "config": {},
            "step": 1,
        },
        path,
    )
    loaded = load_stage1(path, "cpu")
    volume = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        a = observer.encode_volume(volume).observation_embeddings
        b = loaded.encode_volume(volume).observation_embeddings
    assert torch.equal(a, b)
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt"):
        load_stage1(tmp_path / "bad.pt")


def ctclip_state(dim=32, heads=2, dim_head=16, patch=(4, 8, 8), depth=1, null_kv=0) -> dict:
    """A CT-CLIP checkpoint fragment: CTViT encoder names and shapes + unrelated keys."""
    inner, ff_inner, size = heads * dim_head, int(4 * (2 / 3) * dim), patch[0] * patch[1] * patch[2]
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    p = "visual_transformer."
    state = {
        f"{p}to_patch_emb.1.weight": r(size),
        f"{p}to_patch_emb.1.bias": r(size),
        f"{p}to_patch_emb.2.weight": r(dim, size),
        f"{p}to_patch_emb.2.bias": r(dim),
        f"{p}to_patch_emb.3.weight": r(dim),
        f"{p}to_patch_emb.3.bias": r(dim),
        f"{p}spatial_rel_pos_bias.net.0.0.weight": r(dim, 2),
        f"{p}spatial_rel_pos_bias.net.0.0.bias": r(dim),
        f"{p}spatial_rel_pos_bias.net.1.0.weight": r(dim, dim),
        f"{p}spatial_rel_pos_bias.net.1.0.bias": r(dim),
        f"{p}spatial_rel_pos_bias.net.2.weight": r(heads, dim),
        f"{p}spatial_rel_pos_bias.net.2.bias": r(heads),
        f"{p}vq._codebook.embed": r(1, 8, dim),
        f"{p}to_pixels.0.weight": r(size, dim),
        "to_visual_latent.weight": r(16, 64 * dim),
        "text_transformer.embeddings.word_embeddings.weight": r(10, 8),
    }
    for stack in ("spatial", "temporal"):
        for kind in ("enc", "dec"):
            t = f"{p}{kind}_{stack}_transformer."
            for i in range(depth):
                layer = f"{t}layers.{i}."
                state |= {
                    f"{layer}0.dsconv.weight": r(dim, 1, 3, 3, 3),
                    f"{layer}0.dsconv.bias": r(dim),
                    f"{layer}1.norm.gamma": r(dim),
                    f"{layer}1.norm.beta": r(dim),
                    f"{layer}1.context_norm.gamma": r(dim),
                    f"{layer}1.context_norm.beta": r(dim),
                    f"{layer}1.null_kv": r(heads, 2 * null_kv, dim_head),
                    f"{layer}1.to_q.weight": r(inner, dim),
                    f"{layer}1.to_kv.weight": r(2 * inner, dim),
                    f"{layer}1.q_scale": r(dim_head),
                    f"{layer}1.k_scale": r(dim_head),
                    f"{layer}1.to_out.weight": r(dim, inner),
                    f"{layer}3.0.weight": r(dim),
                    f"{layer}3.0.bias": r(dim),
                    f"{layer}3.1.weight": r(2 * ff_inner, dim),
                    f"{layer}3.4.weight": r(dim, ff_inner),
                }
            state[f"{t}norm_out.gamma"] = r(dim)
            state[f"{t}norm_out.beta"] = r(dim)
    return state


def test_ctclip_mapping_loads_every_encoder_tensor(tmp_path):
    state = ctclip_state()
    path = tmp_path / "ctclip.pt"
    torch.save(state, path)
    enc = encoder()
    counts = load_ctclip_visual(enc, path)
    own = enc.state_dict()
    assert counts["loaded"] == len(own)
    p = "visual_transformer."
    pairs = {
        "patch_embed.proj.weight": f"{p}to_patch_emb.2.weight",
        "spatial_bias.layers.2.bias": f"{p}spatial_rel_pos_bias.net.2.bias",
        "temporal.layers.0.attn.to_kv.weight": f"{p}enc_temporal_transformer.layers.0.1.to_kv.weight",
        "spatial.layers.0.attn.norm.weight": f"{p}enc_spatial_transformer.layers.0.1.norm.gamma",
        "spatial.layers.0.ff.down.weight": f"{p}enc_spatial_transformer.layers.0.3.4.weight",
        "temporal.norm_out.bias": f"{p}enc_temporal_transformer.norm_out.beta",
        "spatial.layers.0.peg.conv.weight": f"{p}enc_spatial_transformer.layers.0.0.dsconv.weight",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(own[ours], state[theirs]), ours
    assert torch.isfinite(enc(torch.randn(1, 1, 16, 32, 32))).all()


def test_ctclip_mapping_drops_decoder_and_text_weights():
    mapped, dropped = map_ctclip_visual(ctclip_state())
    assert not any("dec_" in k or "vq" in k for k in mapped)
    assert any(k.startswith("dec_spatial") for k in dropped)
    assert "vq._codebook.embed" in dropped
    assert all(not k.startswith("text_transformer") for k in dropped)  # outside the prefix


def test_ctclip_mapping_rejects_null_kv_and_wrong_shapes(tmp_path):
    with pytest.raises(ValueError, match="null key/values"):
        map_ctclip_visual(ctclip_state(null_kv=2))
    path = tmp_path / "wide.pt"
    torch.save(ctclip_state(dim=48), path)
    with pytest.raises(ValueError, match="wide.pt"):
        load_ctclip_visual(encoder(), path)


def test_without_patch_norm_the_patch_mean_survives_and_ctclip_refuses(tmp_path):
    plain = VisionEncoder((16, 32, 32), (4, 8, 8), 32, 2, 16, 1, 1, patch_norm=False)
    normed = encoder()
    dark, bright = torch.full((1, 1, 16, 32, 32), -0.8), torch.full((1, 1, 16, 32, 32), 0.0)
    # CT-CLIP's per-patch LayerNorm maps every uniform volume to the same tokens
    assert torch.allclose(normed.patch_embed(dark), normed.patch_embed(bright))
    assert not torch.allclose(plain.patch_embed(dark), plain.patch_embed(bright))
    path = tmp_path / "ctclip.pt"
    torch.save(ctclip_state(), path)
    with pytest.raises(ValueError, match="unknown"):
        load_ctclip_visual(plain, path)


def test_conv_stem_keeps_the_token_grid(tmp_path):
    linear = VisionEncoder((16, 32, 32), (4, 8, 8), 32, 2, 16, 1, 1, stem="linear")
    conv = VisionEncoder((16, 32, 32), (4, 8, 8), 32, 2, 16, 1, 1, stem="conv")
    volume = torch.randn(2, 1, 16, 32, 32)
    assert conv(volume).shape == linear(volume).shape == (2, 64, 32)
    assert conv.patch_embed(volume).shape == (2, 4, 4, 4, 32)  # (B, t, h, w, dim)
    strides = [m.stride for m in conv.patch_embed.stem if isinstance(m, torch.nn.Conv3d)]
    # (4, 8, 8) = 2*2 x 2*2*2: two halvings of all axes, one of height/width, then 1x1x1
    assert strides == [(2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 1, 1)]
    conv(volume).sum().backward()
    assert conv.patch_embed.stem[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="stem"):
        VisionEncoder((16, 32, 32), (4, 8, 8), 32, 2, 16, 1, 1, stem="deep")
    path = tmp_path / "ctclip.pt"
    torch.save(ctclip_state(), path)
    with pytest.raises(ValueError, match="unknown"):
        load_ctclip_visual(conv, path)


def test_text_centering_removes_the_training_mean_direction():
    observer = StructureObserver(ObserverConfig(**SMALL, text_centering=True))
    common = torch.randn(16)
    train = common + 0.05 * torch.randn(6, 10, 16)  # nearly parallel texts per structure
    raw = StructureObserver(ObserverConfig(**SMALL)).encode_text(train)
    # before centring: near-identical projected texts
    assert float(torch.einsum("se,se->s", raw[0], raw[1]).mean().detach()) > 0.9
    observer.set_text_center(train)
    unit = torch.nn.functional.normalize(train, dim=-1)
    assert torch.allclose(observer.text_center, unit.mean(0), atol=1e-6)
    centred = observer.encode_text(train)
    expected = torch.nn.functional.normalize(observer.text_proj(unit - unit.mean(0)), dim=-1)
    assert torch.allclose(centred, expected, atol=1e-5)
    # queue keys (K, H) with structure ids use their own structure's mean
    ids = torch.tensor([3, 7])
    keys = observer.encode_text(train[0, [3, 7]], ids)
    assert torch.allclose(keys, centred[0, [3, 7]], atol=1e-5)
    # the centre is a buffer: saved and restored with the state dict
    clone = StructureObserver(ObserverConfig(**SMALL, text_centering=True))
    clone.load_state_dict(observer.state_dict())
    assert torch.equal(clone.text_center, observer.text_center)
    off = StructureObserver(ObserverConfig(**SMALL, text_centering=False))
    off.set_text_center(train)
    assert off.text_center is None and "text_center" not in off.state_dict()


def test_embedding_centering_hand_computed():
    """Batch mean in training (and running-mean update), running mean in eval / batch of 1."""
    center = EmbeddingCentering(num_queries=1, dim=2, momentum=0.5)
    batch = torch.tensor([[[1.0, 3.0]], [[3.0, 5.0]]])  # (B=2, S=1, E=2), mean (2, 4)
    out = center(batch)
    assert torch.allclose(out, torch.tensor([[[-1.0, -1.0]], [[1.0, 1.0]]]))
    assert torch.allclose(center.running_mean, torch.tensor([[1.0, 2.0]]))  # 0 + 0.5 * (2, 4)
    single = center(torch.tensor([[[2.0, 2.0]]]))  # one case: the running mean, no update
    assert torch.allclose(single, torch.tensor([[[1.0, 0.0]]]))
    assert torch.allclose(center.running_mean, torch.tensor([[1.0, 2.0]]))
    center.eval()
    assert torch.allclose(center(batch), batch - torch.tensor([1.0, 2.0]))
    assert torch.allclose(center.running_mean, torch.tensor([[1.0, 2.0]]))


def test_image_centering_spreads_identical_looking_observations():
    """Two nearly equal volumes: centred embeddings point in opposite directions."""
    torch.manual_seed(0)
    observer = StructureObserver(ObserverConfig(**SMALL, image_centering=True)).train()
    plain = StructureObserver(ObserverConfig(**SMALL)).train()
    plain.load_state_dict(observer.state_dict(), strict=False)
    base = torch.randn(1, 1, 16, 32, 32)
    volume = torch.cat([base, base + 0.01 * torch.randn_like(base)])
    centred = observer.encode_volume(volume).observation_embeddings  # (2, S, E)
    raw = plain.encode_volume(volume).observation_embeddings
    assert (raw[0] * raw[1]).sum(-1).min() > 0.99
    assert torch.allclose((centred[0] * centred[1]).sum(-1), torch.full((10,), -1.0), atol=1e-4)
    assert "image_center.running_mean" in observer.state_dict()
    assert "image_center.running_mean" not in plain.state_dict()


def test_spatial_readout_hand_computed_signed_contrast():
    """Weights set by hand: structure 0 reads token 0 minus token 2 (a signed contrast)."""
    from ctrg.models.readout import SpatialReadout

    readout = SpatialReadout(num_queries=2, num_patches=3, dim=2, rank=1)
    with torch.no_grad():
        readout.reduce.weight.copy_(torch.tensor([[1.0, 0.0]]))  # keep channel 0
        readout.reduce.bias.zero_()
        readout.expand.weight.zero_()
        readout.expand.bias.zero_()
        readout.expand.weight[0, 0], readout.expand.weight[0, 2] = 1.0, -1.0  # s=0, c=0
        readout.expand.weight[3, 1] = 2.0  # s=1, c=1 reads 2 * token 1
    patches = torch.tensor([[[5.0, 9.0], [1.0, 9.0], [2.0, 9.0]]])  # (B=1, N=3, C=2)
    out = readout(patches)  # (1, 2, 2)
    assert torch.equal(out, torch.tensor([[[3.0, 0.0], [0.0, 2.0]]]))
    # the same tokens at other positions give another readout: it is position-aware
    assert not torch.equal(readout(patches.flip(1)), out)


def test_spatial_readout_is_added_to_the_observation_tokens():
    torch.manual_seed(0)
    observer = StructureObserver(ObserverConfig(**SMALL, spatial_readout=True)).eval()
    plain = StructureObserver(ObserverConfig(**SMALL)).eval()
    missing, unexpected = plain.load_state_dict(observer.state_dict(), strict=False)
    assert not missing and {k.split(".")[0] for k in unexpected} == {"readout"}
    volume = torch.randn(2, 1, 16, 32, 32)
    with torch.no_grad():
        with_readout = observer.encode_volume(volume)
        without = plain.encode_volume(volume)
        patches = observer.to_query_dim(observer.vision(volume))
        expected = without.observation_tokens + observer.readout(patches)
    assert torch.allclose(with_readout.observation_tokens, expected, atol=1e-5)
    assert torch.equal(with_readout.attention, without.attention)  # patch choice unchanged
    assert torch.equal(with_readout.patch_tokens, without.patch_tokens)


def test_position_generator_convolves_in_fp32_inside_bf16_autocast():
    """Depthwise conv3d has no fast bf16 CUDA kernel: the PEG leaves autocast (same numbers)."""
    from ctrg.models.vision import PositionGenerator

    torch.manual_seed(0)
    peg = PositionGenerator(8)
    grid = torch.randn(2, 3, 4, 4, 8)  # (B, t, h, w, dim)
    plain = peg(grid)
    assert plain.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = peg(grid)
        PositionGenerator.conv_in_weight_dtype = False
        try:
            autocast = peg(grid)  # the old path: autocast runs the conv in bf16
        finally:
            PositionGenerator.conv_in_weight_dtype = True
    assert inside.dtype == torch.float32 and autocast.dtype == torch.bfloat16
    torch.testing.assert_close(inside, plain, rtol=0, atol=0)  # exactly the fp32 result
    assert (autocast.float() - plain).abs().max() > 1e-4  # bf16 rounding is visible


def test_position_generator_switch_changes_nothing_without_autocast():
    from ctrg.models.vision import PositionGenerator

    torch.manual_seed(0)
    model = encoder()
    volume = torch.randn(1, 1, 16, 32, 32)
    expected = model(volume)
    PositionGenerator.conv_in_weight_dtype = False
    try:
        assert torch.equal(model(volume), expected)
    finally:
        PositionGenerator.conv_in_weight_dtype = True
