"""Task event streams: appending, leasing, fan-out and delivery to clients."""
