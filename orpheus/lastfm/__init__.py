"""Last.fm tags: the query layer (`db`), sparse co-occurrence analysis (`matrix`), the cleaning
rules and the clean-db writer (`cleaning`), and the original hand-filtered tag lists (`lists/`,
package data read with importlib.resources)."""
