"""Server-side fetching of caller-given URLs (`image_url`, `bg_image_url`): an attack surface,
so every URL is parsed strictly (`urls`), every address checked (`addresses`) and every hop
pinned to the checked address with size and time caps (`download`); `remote_images` runs it
for the asyncio server and answers API errors."""
