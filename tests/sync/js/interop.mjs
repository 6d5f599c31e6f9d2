// A stock Yjs client (yjs + y-websocket in node): joins a document, inserts its marker,
// waits until every expected marker is present, prints the final text as JSON.
// usage: node interop.mjs <serverUrl> <room> <token> <marker> <expected,markers>
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const [serverUrl, room, token, marker, expected] = process.argv.slice(2)
const doc = new Y.Doc()
const provider = new WebsocketProvider(serverUrl, room, doc, {
  WebSocketPolyfill: WebSocket,
  params: { token },
  disableBc: true,
})
provider.awareness.setLocalStateField('user', { name: 'impostor', account_id: 'someone-else' })
const text = doc.getText('source')
const wanted = expected.split(',').filter(Boolean)
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: 'timeout', text: text.toString() }))
  process.exit(2)
}, 20000)

provider.once('sync', () => {
  text.insert(text.length, marker)
  const check = () => {
    const s = text.toString()
    if (wanted.every((m) => s.includes(m))) {
      // Give our own update a moment to be on the wire before leaving.
      setTimeout(() => {
        const others = [...provider.awareness.getStates().entries()]
          .filter(([id]) => id !== doc.clientID)
          .map(([, st]) => st.user)
        console.log(JSON.stringify({ text: text.toString(), others }))
        clearTimeout(timer)
        provider.destroy()
        process.exit(0)
      }, 300)
      text.unobserve(check)
    }
  }
  text.observe(check)
  check()
})
