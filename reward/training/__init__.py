"""Training of the generative reward model: evaluation-chain SFT, then GRPO.

- :mod:`reward.training.data`        prompts and SFT targets from rows
- :mod:`reward.training.policy`      loading a policy, chat templating
- :mod:`reward.training.checkpoint`  resumable SFT checkpoints (model, optimiser, state)
- :mod:`reward.training.sft`         SFT on evaluation chains
- :mod:`reward.training.rollout_rewards`  composite rewards of a batch of rollouts (+ online MetaRM)
- :mod:`reward.training.trl_rewards` those rewards as TRL ``GRPOTrainer`` reward functions
- :mod:`reward.training.grpo`        GRPO on TRL's ``GRPOTrainer`` (MetaRM in checkpoints, logs)
"""
