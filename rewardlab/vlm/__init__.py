"""The full vision-language reward model: a backend for GPU workers beside the default heads.

A transformers vision-language model, loaded from a local directory, reads the image, the prompt (with the
item's facts appended, as Fact-RLHF does) and one response, and a scalar head on its last real token gives
the reward. It trains on the same objectives as the default model (`rewardlab.train`): Bradley-Terry with
margin, SFC weights from a text-only pass, EGT curation and curriculum. Its artifact and scores have the
same shapes, so the loop cannot tell the two backends apart (`rewardlab.pipeline` dispatches on the
artifact's `backend`).

Honest scores. The default ensemble gives every labeled pair an out-of-fold score (`rewardlab.scoring`);
K full fine-tunes of a VLM would cost K times the training and K copies of the model. Here the members
are K folds of *trainable state* over one shared backbone: with LoRA (the default) each member is its own
adapter and head on the same frozen weights, so memory holds one model and training costs (K-1) passes over
the labels; K defaults to 2, one pass, each member learning from half the labeled items. Member k never
sees fold k, so `p_a_better`, `entropy` and `noise_score` of a labeled pair come from a model that did not
train on it, and `mutual_info` is the disagreement of the two members. MC-dropout on one model was not
chosen: that model would vouch for its own training labels, which is exactly what `noise_score` must not do.

Modules: `config` (settings), `batches` (conversations, collator, length buckets), `model` (backbone,
LoRA, scalar head), `train` (the fit and the front door `vlm_train`), `reward_model` (a trained model:
score, save, load), `tiny` (tiny random models of a real architecture, for tests and the CPU bench).
"""
