"""Changes coming in: profiles, memberships, subscriptions, segment IDs, inbound tokens."""
