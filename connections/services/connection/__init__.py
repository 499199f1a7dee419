"""A connection's state and credentials: the breaker, its transitions and history, clients, key checks."""
