"""The worker path: claim, plan (the pure attribute rules), send per transport, log, back off."""
