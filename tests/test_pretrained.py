from mmsent.pretrained import load_backbone


def test_the_text_backbone_carries_nothing_mmsent_does_not_use():
    backbone = load_backbone("default", pretrained=False)
    # No pooler head (no loss reaches it: DDP refuses such weights), and its own loss set aside, so
    # walking its attributes (TensorBoard's graph trace) does not warn about an unknown loss_type.
    assert backbone.pooler is None
    assert backbone.loss_function is None
