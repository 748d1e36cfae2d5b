"""Contract-suite registrations of the SQL backends (sqlite, postgres, oracle)."""
