"""What everything else stands on: event files, errors, fields, machine description, atomic writes, registries."""
