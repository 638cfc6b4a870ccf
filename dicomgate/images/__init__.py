"""Images: the Portal AET storage SCP, PACS echo, C-FIND/C-MOVE retrieve, HTTP image mode."""
