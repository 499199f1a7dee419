"""The two roles of SPEC §6, as Django groups with model permissions.

Kept in one place so the data migration and the tests agree on what each role may do.
"""

MARKETERS = "Marketers"
LOG_VIEWERS = "Log viewers"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    MARKETERS: [
        f"{action}_{model}"
        for model in ("connection", "audience", "subscription", "profile", "membership")
        for action in ("add", "change", "delete", "view")
    ]
    + ["view_delivery", "view_batchdelivery"]
    # Erasures: the record is read-only for everyone; un-suppressing deletes a suppressed identifier.
    + ["view_erasurerecord", "view_erasurecall", "view_suppressedidentifier", "delete_suppressedidentifier"],
    LOG_VIEWERS: ["view_delivery", "view_batchdelivery"],
}
