"""Customer service: the system of record for customer profiles, contacts, consents and the 360-degree view."""
