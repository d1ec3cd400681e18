"""Active learning: score the unlabeled pool, pick what is worth labeling, take labels back."""
