"""From stored films to model inputs: the cleaning rules, the clean table, the encoded groups."""
