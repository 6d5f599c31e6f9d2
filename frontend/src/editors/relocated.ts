// The event the editors send when the server closes a document because its file was
// renamed (4409, reason: the new path) or deleted (4410); kept apart from the Yjs code
// so the project screen can listen without loading it.

export interface DocRelocated { projectId: string; path: string; to: string | null }
export const DOC_RELOCATED = "collab:doc-relocated";

/** Window event: a document's server closed it because this account left the project. */
export const ACCESS_LOST = "collab:access-lost";
