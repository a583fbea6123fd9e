"""Training of the generative reward model: evaluation-chain SFT, then GRPO.

- :mod:`reward.training.data`        prompts and SFT targets from rows
- :mod:`reward.training.policy`      loading a policy, chat templating, token log-probs
- :mod:`reward.training.checkpoint`  resumable checkpoints (model, optimiser, RNG, MetaRM)
- :mod:`reward.training.sft`         SFT on evaluation chains
- :mod:`reward.training.rollout_rewards`  composite rewards of a batch of rollouts (+ online MetaRM)
- :mod:`reward.training.grpo`        a GRPO loop (group advantages, clipped ratio, KL to reference)
- :mod:`reward.training.trl_rewards` the same rewards as TRL ``GRPOTrainer`` reward functions
"""
