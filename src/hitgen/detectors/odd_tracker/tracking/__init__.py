"""Track reconstruction for odd-tracker: digitisation into measurements, seeding, helix fit, pulls."""
