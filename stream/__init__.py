"""Stream processors (faust-streaming): feedback, persona refresher, reward worker."""
