"""EAPCoarseHead (learned) and AttentionAggregator (training-free)."""
import pytest
import torch

from crseg.models.eap import AttentionAggregator, EAPCoarseHead
from crseg.models.losses import bce_dice_losses
from crseg.models.mllms.geometry import ImageGeometry
from crseg.registry import MODELS


def _peaked(b=2, c=6, h=7, w=9, at=(2, 6)):
    torch.manual_seed(0)
    x = torch.rand(b, c, h, w) * 0.01
    x[:, :, at[0], at[1]] += 1.0
    return x


def test_head_shapes_loss_and_grad():
    head = MODELS.build(dict(type='EAPCoarseHead', in_channels=6, channels=16, upsample=4))
    x = _peaked()
    logits = head(x)
    assert logits.shape == (2, 1, 28, 36)
    gt = torch.zeros(2, 50, 60, dtype=torch.long)
    gt[:, 10:20, 30:40] = 1
    losses = head.loss(logits, gt)
    assert set(losses) == {'loss_coarse_bce', 'loss_coarse_dice'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert head.convs[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='expected'):
        head(torch.rand(1, 5, 7, 9))
    with pytest.raises(ValueError, match=r'gt \[H, W\]'):
        head.loss(logits, gt[:, None])


def test_head_loss_per_sample_lists_and_weights():
    """Per-sample maps against GTs of different sizes: the mean of each sample's BCE / Dice
    (logits resized to its GT), times the head's own loss weights."""
    head = EAPCoarseHead(in_channels=6, channels=8, upsample=2, loss_bce_weight=0.5,
                         loss_dice_weight=2.0)
    logits = list(head(_peaked())[:, 0])  # two [14, 18] maps
    gts = [torch.zeros(30, 40, dtype=torch.long), torch.ones(20, 20, dtype=torch.long)]
    gts[0][5:15, 10:30] = 1
    expected = {}
    for lg, gt in zip(logits, gts):
        up = torch.nn.functional.interpolate(lg[None, None], size=gt.shape, mode='bilinear',
                                             align_corners=False)[0]
        for k, v in bce_dice_losses(up, gt[None], 'loss_coarse').items():
            expected[k] = expected.get(k, 0) + v / 2
    losses = head.loss(logits, gts)
    torch.testing.assert_close(losses['loss_coarse_bce'], 0.5 * expected['loss_coarse_bce'])
    torch.testing.assert_close(losses['loss_coarse_dice'], 2.0 * expected['loss_coarse_dice'])
    # [1, h, w] maps (as CRSeg._forward gives them) read the same
    torch.testing.assert_close(head.loss([lg[None] for lg in logits], gts), losses)


def test_head_loss_ignores_what_the_mllm_did_not_see():
    """With a geometry (LLaVA's centre crop of a 2:1 image) GT pixels outside its box are
    ignored: changing them does not change the loss."""
    head = EAPCoarseHead(in_channels=6, channels=8, upsample=1)
    logits = list(head(_peaked(b=1, h=4, w=4, at=(1, 2)))[:, 0])
    g = ImageGeometry(grid=(4, 4), box=(20.0, 0.0, 60.0, 40.0), image_size=(40, 80))
    gt = torch.zeros(40, 80, dtype=torch.long)
    gt[10:30, 30:50] = 1
    base = head.loss(logits, [gt], [g])
    outside = gt.clone()
    outside[:, :20] = 1
    outside[:, 60:] = 1
    torch.testing.assert_close(head.loss(logits, [outside], [g]), base)
    assert not torch.allclose(head.loss(logits, [outside])['loss_coarse_bce'],
                              base['loss_coarse_bce'])  # without it they count


def test_head_ignores_255():
    head = EAPCoarseHead(in_channels=6, channels=8, upsample=2)
    logits = head(_peaked())
    gt = torch.zeros(2, 14, 18, dtype=torch.long)
    gt[:, :, :9] = 255
    base = head.loss(logits, gt)  # a [B, 1, h, w] batch reads as B samples
    # what the model predicts on ignored pixels does not matter
    tweaked = logits.detach().clone()
    tweaked[..., :4] += 10.0  # columns 0-3 of 7x9 logits -> pixels 0-7 after 2x resize
    torch.testing.assert_close(head.loss(tweaked, gt)['loss_coarse_bce'],
                               base['loss_coarse_bce'])
    changed = gt.clone()
    changed[:, :, 9:] = 1
    assert not torch.allclose(head.loss(logits, changed)['loss_coarse_bce'],
                              base['loss_coarse_bce'])


def test_head_learns_a_peak():
    torch.manual_seed(0)
    head = EAPCoarseHead(in_channels=4, channels=8, upsample=1)
    opt = torch.optim.Adam(head.parameters(), lr=3e-2)
    gt = torch.zeros(8, 6, 6, dtype=torch.long)
    x = torch.rand(8, 4, 6, 6) * 0.1
    for i in range(8):
        y, xx = divmod(i * 5 % 36, 6)
        x[i, :, y, xx] += 2.0
        gt[i, y, xx] = 1
    for _ in range(60):
        opt.zero_grad()
        sum(head.loss(head(x), gt).values()).backward()
        opt.step()
    pred = head(x)[:, 0] > 0
    assert (pred == gt.bool()).float().mean() > 0.97


def test_aggregator_has_the_same_loss():
    x = _peaked()
    gt = torch.zeros(2, 14, 18, dtype=torch.long)
    gt[:, 4:6, 12:14] = 1
    agg = AttentionAggregator()
    losses = agg.loss(agg(x), gt)
    assert set(losses) == {'loss_coarse_bce', 'loss_coarse_dice'}
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize('mode', ['mean', 'top_heads'])
def test_aggregator_peak_and_flat(mode):
    agg = MODELS.build(dict(type='AttentionAggregator', mode=mode, top_k=2))
    out = agg(_peaked())
    assert out.shape == (2, 1, 7, 9)
    assert out[0, 0].flatten().argmax().item() == 2 * 9 + 6
    assert out[0, 0, 2, 6] > 0 and (out[0, 0] > 0).sum() == 1
    flat = agg(torch.ones(1, 3, 4, 4))
    assert torch.equal(flat, torch.zeros(1, 1, 4, 4))


def test_top_heads_picks_concentrated_channels():
    x = torch.ones(1, 3, 5, 5)
    x[0, 1, 4, 0] = 50.0  # concentrated channel
    x[0, 0, 0, 4] = 1.5  # weak bump in a nearly flat channel
    score = AttentionAggregator.concentration(x)
    assert score[0].argmax() == 1 and score[0, 2].abs() < 1e-6
    out = AttentionAggregator(mode='top_heads', top_k=1)(x)
    assert out[0, 0].flatten().argmax().item() == 4 * 5 + 0
    with pytest.raises(ValueError, match='mode'):
        AttentionAggregator(mode='max')
