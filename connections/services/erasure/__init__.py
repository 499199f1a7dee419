"""Erasing a person: the rules, what is erased here, the Customer.io calls, suppression, retention."""
