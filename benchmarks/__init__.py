"""`make bench`: speed, memory and size of the app against the seed's way and the machine's limit."""
