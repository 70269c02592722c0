"""The study files shipped with gsa-nas (package data: *.yaml), found by name with `gsa-nas run NAME`."""
