"""Transformer (base) on WMT14 English-German, as in the paper.

Modules, one job each:

- `model`: the encoder-decoder `Transformer` (keras-hub blocks, one shared
  embedding) and which weights are sparsified;
- `vocab`: the shared SentencePiece vocabulary (its training text, build,
  read, `Codec`);
- `data`: TFDS (or in-memory, or synthetic) sentence pairs, tokenized,
  bucketed and batched by tokens;
- `decoding`: cached greedy and length-penalized beam search;
- `bleu`: sacreBLEU and the paper's tokenized BLEU;
- `loss`, `lr_schedule`: label-smoothed cross-entropy, t2t's rsqrt schedule;
- `configs`: `TransformerConfig`, the paper's presets and released-run settings;
- `task`: the `Task` that `tf-sparsity train --task transformer` runs through
  the shared runner;
- `export`: the string-in, string-out SavedModel for TF Serving;
- `translator`: the `Translator` (sentences in, translations out);
- `translate`, `cli`: `tf-sparsity translate` (its work, its flags).
"""
