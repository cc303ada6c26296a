// Types for Hearth's client API (hearth.js).

export type ModelSource = string | URL | File | Blob | ArrayBuffer | Uint8Array;

export interface LoadProgress {
  /** "download" while a URL streams in (bytes go straight into the engine); "load" for Blob/bytes. */
  phase: "download" | "load";
  loaded: number;
  /** 0 when the server sent no Content-Length (until the end, when it equals `loaded`). */
  total: number;
}

export interface LoadOptions {
  /** KV cache positions per generation; default min(model context, 2048). */
  contextSize?: number;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Run the engine in a dedicated module Worker (default true). */
  worker?: boolean;
  /**
   * Engine threads (default: the core count, at most 8). Above 1 and on a cross-origin isolated
   * page, the threaded build runs that many pool Workers; otherwise (or if it fails to start,
   * or outside a Worker) one thread. `info.threads` says what it got.
   */
  threads?: number;
}

export interface ModelInfo {
  name: string;
  architecture: string;
  nVocab: number;
  /** The model's training context (llama.context_length). */
  contextLength: number;
  /** The context size generations use. */
  contextSize: number;
  nLayer: number;
  nEmbd: number;
  nHead: number;
  nHeadKv: number;
  bos: number | null;
  eos: number | null;
  /** The built-in chat template `chat` uses, chosen from the vocabulary. */
  chatTemplate: "llama3" | "chatml" | "llama2";
  /** Engine threads actually running (1 unless the threaded build started). */
  threads: number;
}

export interface EngineStats {
  threads: number;
  /** The engine's wasm memory; it never shrinks, so this is its peak so far. */
  wasmMemoryBytes: number;
}

export interface GenerateOptions {
  maxTokens?: number;
  /** 0: greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  /** Locally typical sampling (1: off). */
  typicalP?: number;
  repeatPenalty?: number;
  /** Subtracted per earlier occurrence within repeatLastN (0: off). */
  frequencyPenalty?: number;
  /** Subtracted once if the token occurred within repeatLastN (0: off). */
  presencePenalty?: number;
  repeatLastN?: number;
  seed?: number;
  /** Text that ends the reply (never emitted), also when it spans tokens. */
  stop?: string | string[];
  /** Stop at an end-of-generation token (default true). */
  stopAtEos?: boolean;
  signal?: AbortSignal;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | string;
  content: string;
}

export interface TokenChunk {
  text: string;
  tokenIds: number[];
  done: false;
}

export type FinishReason = "length" | "eos" | "context" | "stop" | "abort";

export interface FinalChunk {
  text: "";
  tokenIds: [];
  done: true;
  finishReason: FinishReason;
  /** cachedTokens: prompt tokens reused from the previous generation's KV cache (not re-read). */
  usage: { promptTokens: number; completionTokens: number; cachedTokens: number };
  timing: { promptMs: number; decodeMs: number; ttftMs: number; tokensPerSecond: number };
}

export type Chunk = TokenChunk | FinalChunk;

export class HearthError extends Error {
  /** The engine's code ("truncated", "bad_magic", "corrupt", "context_overflow", "invalid_argument", ...) or "aborted", "network", "worker". */
  code: string;
  constructor(code: string, message: string);
}

export class Hearth {
  static load(source: ModelSource, options?: LoadOptions): Promise<Hearth>;
  readonly info: ModelInfo;
  generate(prompt: string | number[] | Uint32Array, options?: GenerateOptions): AsyncGenerator<Chunk, void, unknown>;
  chat(messages: ChatMessage[], options?: GenerateOptions): AsyncGenerator<Chunk, void, unknown>;
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): Promise<number[]>;
  decode(ids: number[] | Uint32Array): Promise<string>;
  stats(): Promise<EngineStats>;
  unload(): Promise<void>;
}

export default Hearth;
