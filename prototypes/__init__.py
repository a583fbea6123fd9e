"""User prototypes: embeddings, online clustering, Qdrant stores, the preference prior."""
