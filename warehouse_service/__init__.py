"""Warehouse service: inventory per sku and reservations of stock per checkout."""
