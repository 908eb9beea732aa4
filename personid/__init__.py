"""The `personid` command: a thin dispatcher over the service (`app`) and the training package (`training`)."""
