"""Generative reward core: P-GenRM evaluation chains, backends, individual-level scaling."""
