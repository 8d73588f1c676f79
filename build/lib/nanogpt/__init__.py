"""nanogpt: a character-level GPT course, stage by stage."""
