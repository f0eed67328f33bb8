"""The one naming scheme of result files, so every benchmark's results of a device and day sort together."""


def result_name(kind: str, device: str, date: str) -> str:
    """`<kind>_<device slug>_<date>`, the slug the device's letters and digits, lowercase, dashes between."""
    slug = "".join(c if c.isalnum() else "-" for c in device).strip("-").lower()
    return f"{kind}_{slug}_{date}"
