"""The outbox and the floor everything stands on: bulk SQL, the outbox's rows, wake-ups."""
