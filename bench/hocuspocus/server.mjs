// Hocuspocus for bench/docsync.py: in memory, a cold document loaded from its file.
// usage: node server.mjs <port> <files-dir>
import { readFile } from 'node:fs/promises'
import { Server } from '@hocuspocus/server'

const [port, dir] = process.argv.slice(2)
const server = new Server({
  port: Number(port),
  address: '127.0.0.1',
  quiet: true,
  async onLoadDocument ({ document, documentName }) {
    try {
      const text = await readFile(`${dir}/${documentName}`, 'utf8')
      document.getText('source').insert(0, text)
    } catch {}
    return document
  },
})
server.listen()
