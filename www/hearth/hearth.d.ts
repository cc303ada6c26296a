// Types for Hearth's client API (hearth.js).

/** A split model (`name-00001-of-0000N.gguf`): the URL of its first shard, or all shards in order. */
export type ModelSource = string | URL | File | Blob | ArrayBuffer | Uint8Array | Array<string | URL | File | Blob>;

export interface LoadProgress {
  /**
   * "inspect" once, when the header has been read and the model fits (before any weight is
   * downloaded: `plan` says what it will need); then "download" while a URL streams in (bytes go
   * straight into the engine), or "load" for Blob/bytes.
   */
  phase: "inspect" | "download" | "load";
  /** With "inspect": what the model will need (as `Hearth.inspect` returns it). */
  plan?: ModelInspection;
  loaded: number;
  /** 0 when the server sent no Content-Length (until the end, when it equals `loaded`). */
  total: number;
  /** For a split model: which shard is arriving (1-based), of how many. */
  shard?: number;
  shards?: number;
}

export interface LoadOptions {
  /**
   * "auto" (default): WebGPU when the browser has a hardware adapter that can run every weight type
   * of the model, else the wasm SIMD128 engine ("cpu"). "webgpu": WebGPU or a HearthError
   * "backend_unavailable" / "unsupported_tensor_type". A GPU lost mid-generation ends that
   * generation with "device_lost"; the next request reloads the model on the CPU.
   */
  backend?: "auto" | "cpu" | "webgpu";
  /** KV cache positions per generation; default min(model context, 2048). */
  contextSize?: number;
  /**
   * How the KV cache stores keys and values, as llama.cpp's cache_type_k/v: "f16" (default,
   * llama.cpp's default: 2 bytes per value), "q8_0" (34 bytes per 32 values; attention as
   * llama.cpp's flash attention computes it) or "f32" (4 bytes). Generations use it, the preflight
   * sizes the cache for it; `info.kvType` says which.
   */
  kvType?: "f16" | "q8_0" | "f32";
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Run the engine in a dedicated module Worker (default true). */
  worker?: boolean;
  /**
   * Share one engine among this origin's tabs (default false): a model loaded from a URL runs in
   * a SharedWorker named after the URL and these options, so every tab that loads it so uses one
   * copy of the weights. Each tab keeps its own conversation (swapped in and out of the engine's
   * KV cache, so it continues exactly as in a dedicated engine); requests from the tabs are served
   * in turn; a closed tab's state is freed, and the last tab's `unload` frees the model. LoRA
   * adapters are refused there (HearthError "unsupported": they would change every tab's model).
   * A File or bytes, or a browser without SharedWorker, gets a dedicated Worker: `info.shared`
   * says which. The shared engine runs on one thread where the browser starts no Worker from a
   * SharedWorker.
   */
  shared?: boolean;
  /** Keep URL models in the model store (OPFS): later loads read the stored copy, offline too; an interrupted download resumes. */
  cache?: boolean;
  /** With cache: the file's expected sha256 (hex); a mismatch is HearthError "checksum_mismatch". */
  sha256?: string;
  /**
   * A Llama Guard model (a source, a loaded Hearth, or {model, categories, excluded, logitBias,
   * backend (default "cpu"), contextSize}) loaded into a second engine that checks each chat():
   * the conversation before generating (flagged: HearthError "content_flagged" with `moderation`)
   * and the reply once complete (flagged: finishReason "content_filter"). `llm.guard` is it.
   */
  guard?: ModelSource | Hearth | ({ model: ModelSource | Hearth; backend?: "auto" | "cpu" | "webgpu"; contextSize?: number } & Pick<ModerateOptions, "categories" | "excluded" | "logitBias">);
  /**
   * Engine threads (default: the core count, at most 8). Above 1 and on a cross-origin isolated
   * page, the threaded build runs that many pool Workers; otherwise (or if it fails to start,
   * or outside a Worker) one thread. `info.threads` says what it got.
   */
  threads?: number;
}

export interface StoredModel {
  url: string;
  size: number;
  /** Of the stored bytes; null while partial. */
  sha256: string | null;
  /** ISO date; null while partial. */
  storedAt: string | null;
  /** false: an interrupted download that the next attempt resumes. */
  complete: boolean;
}

/** The model store in the Origin Private File System. */
export interface ModelStoreApi {
  readonly available: boolean;
  list(): Promise<StoredModel[]>;
  delete(url: string): Promise<boolean>;
  /** Download into the store without loading; resumes a partial download ("quota_exceeded" when it cannot fit). */
  download(url: string, options?: { sha256?: string; onProgress?: (p: LoadProgress) => void; signal?: AbortSignal }): Promise<{ size: number; sha256: string; from: "store" | "network"; resumedAt: number }>;
}

export interface ModelInfo {
  /** The GGUF's general.name, as the converter wrote it (often a training run's name). */
  name: string;
  /** The name people know the model by ("SmolLM2 135M Instruct"): show this one. */
  displayName: string;
  /** The quantization its file name says ("Q4_1", "Q4_K_M", "F16"), or null. */
  quant: string | null;
  architecture: string;
  nVocab: number;
  /** The model's training context (llama.context_length). */
  contextLength: number;
  /** The context size generations use. */
  contextSize: number;
  /** The KV cache type generations use (LoadOptions.kvType). */
  kvType: "f16" | "q8_0" | "f32";
  nLayer: number;
  nEmbd: number;
  nHead: number;
  nHeadKv: number;
  bos: number | null;
  eos: number | null;
  /**
   * How embeddings pool the tokens, as the GGUF's pooling_type says: "none" (a vector per token;
   * also when the file says nothing, as llama.cpp reads a llama model), "mean", "cls", "last", or
   * "rank" (a reranker's head, not computed: pass a pooling).
   */
  pooling: "none" | "mean" | "cls" | "last" | "rank";
  backend: "cpu" | "webgpu";
  /** The WebGPU adapter, when backend is "webgpu". */
  gpu: { name: string; backend: string; deviceType: string; shaderF16: boolean } | null;
  /** Why "auto" (or a lost device) left the model on the CPU, if it did, as a sentence ("WebGPU is not available in this browser"). */
  backendFallback: string | null;
  /** "model": the GGUF's own tokenizer.chat_template; else the built-in one its vocabulary calls for. */
  chatTemplate: "model" | "llama3" | "chatml" | "llama2";
  /** Engine threads actually running (1 unless the threaded build started). */
  threads: number;
  /** The engine build running: "relaxed" (relaxed-SIMD integer dot products, where the browser has them) or "simd128". */
  simd: "relaxed" | "simd128";
  /** "wasm32" (at most 4 GiB), or "wasm64": the memory64 build (one thread, CPU only) that runs a model past that where the browser has memory64. */
  engine: "wasm32" | "wasm64";
  /** Whether the model runs in an engine shared by this origin's tabs (LoadOptions.shared). */
  shared: boolean;
}

export interface EngineStats {
  threads: number;
  simd: "relaxed" | "simd128";
  engine: "wasm32" | "wasm64";
  /** The engine's wasm memory; it never shrinks, so this is its peak so far. */
  wasmMemoryBytes: number;
  /**
   * A shared engine's tabs (`clients`), how many hold a conversation, and the bytes of those
   * stashed while another tab's conversation is in the engine. Absent on a dedicated engine.
   */
  shared?: { clients: number; conversations: number; stashedBytes: number };
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
  /** Constrain the output: any JSON object, or JSON valid against a schema (OpenAI's shape). */
  responseFormat?: { type: "text" } | { type: "json_object" } | { type: "json_schema"; json_schema: { name?: string; schema: object; strict?: boolean } };
  /** Log-probabilities per token: true, or how many top alternatives (0..20). */
  logprobs?: boolean | number;
  /** {token id: bias in [-100, 100]} added to the logits. */
  logitBias?: Record<string, number>;
  /** chat(): when the conversation outgrows the context, "error" (default) or "shift" (leave out the oldest turns after the system prompt). */
  contextPolicy?: "error" | "shift";
  /** chat(): functions the model may call (OpenAI's tools); the model's chat template renders them (or, if it cannot, Hearth writes them in the Hermes <tool_call> form). */
  tools?: Tool[];
  /** chat(): "auto" (default), "none" (the tools are shown, the reply is not read for calls), "required" or a named function (a grammar forces a call whose arguments match the function's schema). */
  toolChoice?: ToolChoice;
  /** chat(): whether a forced call may be several (default true). */
  parallelToolCalls?: boolean;
  signal?: AbortSignal;
}

/** A function the model may call, as OpenAI's tools array has it. */
export interface Tool {
  type: "function";
  function: { name: string; description?: string; parameters?: object; strict?: boolean };
}

export type ToolChoice = "auto" | "none" | "required" | { type: "function"; function: { name: string } };

/** A call in a conversation, as OpenAI's assistant messages carry it (arguments: JSON text). */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool" | string;
  /** null: an assistant message with tool_calls and no text. */
  content: string | null;
  /** An assistant's calls. */
  tool_calls?: ToolCall[];
  /** A tool message: the call it answers. */
  tool_call_id?: string;
  name?: string;
}

/** chat() with tools: a call's first delta has its index, id and name; later ones more of its arguments (JSON text). */
export interface ToolCallDelta {
  index: number;
  id?: string;
  name?: string;
  arguments: string;
}

export interface TokenLogprob {
  token: string;
  id: number;
  logprob: number;
  bytes: number[];
  topLogprobs: { token: string; id: number; logprob: number; bytes: number[] }[];
}

export interface TokenChunk {
  text: string;
  tokenIds: number[];
  done: false;
  /** With the logprobs option. */
  logprobs?: TokenLogprob[];
  /** chat() with tools: the calls this chunk starts or continues (its `text` is the reply's other content). */
  toolCalls?: ToolCallDelta[];
}

/** "tool_calls": a chat() with tools whose reply called one or more. */
export type FinishReason = "length" | "eos" | "context" | "stop" | "abort" | "tool_calls" | "content_filter";

export interface FinalChunk {
  text: "";
  tokenIds: [];
  done: true;
  finishReason: FinishReason;
  /** chat() with contextPolicy "shift": old messages left out to fit the context. */
  droppedMessages: number;
  /** chat() with tools: every call of the reply, whole. */
  toolCalls?: { id: string; name: string; arguments: string }[];
  /** cachedTokens: prompt tokens reused from the previous generation's KV cache (not re-read). */
  usage: { promptTokens: number; completionTokens: number; cachedTokens: number };
  /** chat() on a model loaded with a guard: the checks of the conversation and of the reply (null when there was none). */
  moderation?: { input: Moderation; output: Moderation | null };
  timing: { promptMs: number; decodeMs: number; ttftMs: number; tokensPerSecond: number };
}

export type Chunk = TokenChunk | FinalChunk;

export interface PerplexityOptions {
  /** Tokens per chunk (default 512); the text must be at least two chunks long. */
  contextSize?: number;
  /** Tokens per engine step (default: a whole chunk); a smaller batch reports progress and honours an abort more often. */
  batch?: number;
  /** The KV cache type (default: the model's, `info.kvType`). */
  kvType?: "f16" | "q8_0" | "f32";
  /** Stops the run between steps: HearthError "aborted"; the model stays usable. */
  signal?: AbortSignal;
  onProgress?: (p: PerplexityProgress) => void;
}

export interface PerplexityProgress {
  /** Tokens evaluated so far, of `total` (chunks × contextSize). */
  evaluated: number;
  total: number;
  chunksDone: number;
  chunks: number;
  /** The estimate over the chunks done so far; null before the first one is scored. */
  perplexity: number | null;
}

/** llama.cpp's llama-perplexity figures for a text. */
export interface PerplexityResult {
  perplexity: number;
  /** llama.cpp's "±": the standard error of the mean negative log-likelihood, times the perplexity. */
  uncertainty: number;
  /** Tokens in the whole text. */
  tokens: number;
  /** Chunks of contextSize tokens evaluated (the rest of the text is left out). */
  chunks: number;
  /** Tokens scored: the second half of each chunk. */
  scored: number;
  contextSize: number;
  batch: number;
  /** The running estimate after each chunk. */
  chunkPerplexities: number[];
  seconds: number;
  /** Tokens evaluated per second (chunks × contextSize / seconds). */
  tokensPerSecond: number;
}

/** One input to embed: a text (tokenized as a prompt: BOS as the model asks) or token ids. */
export type EmbedInput = string | number[] | Uint32Array;

export interface EmbedOptions {
  /** Override the model's pooling (`info.pooling`). */
  pooling?: "none" | "mean" | "cls" | "last";
  /** Scale each vector to unit Euclidean length, as llama.cpp's embd_normalize 2 (default true). */
  normalize?: boolean;
  /** Stops between inputs: HearthError "aborted"; the model stays usable. */
  signal?: AbortSignal;
}

export interface EmbedResult {
  /** One vector (nEmbd values) per input; with pooling "none", one per token of each input. */
  embeddings: Array<Float32Array | Float32Array[]>;
  /** Tokens of each input. */
  tokens: number[];
  pooling: "none" | "mean" | "cls" | "last";
  nEmbd: number;
  promptTokens: number;
}

/** OpenAI's embeddings request (the fields Hearth supports; see openai.js). */
export interface EmbeddingCreateRequest {
  input: string | string[] | number[] | number[][];
  /** Echoed in the response (default: the model's general.name). */
  model?: string;
  /** "float" (default): number[]; "base64": the little-endian float32 bytes. */
  encoding_format?: "float" | "base64";
  /** Only the model's width (info.nEmbd): Hearth does not shorten embeddings. */
  dimensions?: number;
  user?: string;
  /** Hearth: override the GGUF's pooling; needed when it is "none" (this shape has one vector per input). */
  pooling?: "mean" | "cls" | "last";
  /** Hearth: false leaves the vectors as the model makes them (default true: unit length). */
  normalize?: boolean;
  signal?: AbortSignal;
}

export interface CreateEmbeddingResponse {
  object: "list";
  data: Array<{ object: "embedding"; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** Options of `moderate()`. */
export interface ModerateOptions {
  /** Custom categories, in order ({S1: "description"} or [[code, description]]), for templates that read them (Llama Guard 3 1B, 4). */
  categories?: Record<string, string> | Array<[string, string]>;
  /** Codes not to check (left out of the prompt, or out of the verdict for Llama Guard 3 8B's fixed list). */
  excluded?: string[];
  /** {token id: bias} added before the verdict's greedy pick, as OpenAI's logit_bias. */
  logitBias?: Record<string, number>;
  signal?: AbortSignal;
}

/** A Llama Guard verdict on the last message of a conversation. */
export interface Moderation {
  safe: boolean;
  /** The violated categories, as the model named them ("S1", "Violent Crimes"). */
  categories: Array<{ code: string; name: string }>;
  /** Whose message was checked: "User", or "Agent" when the conversation ends with the assistant's. */
  role: "User" | "Agent";
  /** The model's answer as generated ("\n\nunsafe\nS1"). */
  raw: string;
  promptTokens: number;
  /** Prompt tokens found in the KV cache of this role's last check (the taxonomy: not prefilled again). */
  cachedTokens: number;
  generatedTokens: number;
  ms: number;
  /** Whether the model's own Llama Guard template rendered it (else the built-in Llama Guard 3 1B one). */
  modelTemplate: boolean;
  /** The rendered prompt. */
  prompt: string;
}

/** OpenAI's moderations response; `llama_guard` is Hearth's: the verdict's own codes. */
export interface CreateModerationResponse {
  id: string;
  model: string;
  results: Array<{
    flagged: boolean;
    categories: Record<string, boolean>;
    category_scores: Record<string, number>;
    llama_guard: { safe: boolean; categories: Array<{ code: string; name: string }> };
  }>;
}

export interface Moderations {
  create(request: { input: string | string[]; model?: string; categories?: ModerateOptions["categories"]; excluded?: string[]; signal?: AbortSignal }, options?: { signal?: AbortSignal }): Promise<CreateModerationResponse>;
}

export interface Embeddings {
  create(request: EmbeddingCreateRequest & { encoding_format?: "float" }, options?: { signal?: AbortSignal }): Promise<CreateEmbeddingResponse & { data: Array<{ object: "embedding"; index: number; embedding: number[] }> }>;
  create(request: EmbeddingCreateRequest, options?: { signal?: AbortSignal }): Promise<CreateEmbeddingResponse>;
}

export class HearthError extends Error {
  /**
   * The engine's code ("truncated", "bad_magic", "corrupt", "context_overflow", "invalid_argument",
   * "chat_template", "model_too_big": refused before the download, see `Hearth.inspect`, ...) or
   * "aborted", "network", "worker", "engine_crashed" or "out_of_memory": the engine trapped (a
   * bug or a stack overflow; "out_of_memory": an allocation failed); the request failed, so did every other one
   * in flight, and the engine was restarted (a fresh Worker) without its model: `load` it again
   * (the same object's `load`, or `Hearth.load`). The message says what happened, on one line.
   * "content_flagged": a model loaded with a guard refused the conversation (`moderation` says why).
   * Saved sessions: "session_not_found", "session_mismatch", "bad_session". "unsupported": LoRA
   * adapters on a shared engine (LoadOptions.shared).
   */
  code: string;
  /** "content_flagged": the guard's verdict on the user's message, and "input". */
  moderation?: Moderation;
  stage?: "input";
  constructor(code: string, message: string);
}

/** OpenAI's chat-completions request (the fields Hearth supports; see openai.js). */
export interface ChatCompletionRequest {
  messages: { role: string; content: string | null | { type: "text"; text: string }[]; tool_calls?: ToolCall[]; tool_call_id?: string; name?: string }[];
  tools?: Tool[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
  model?: string;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string | string[];
  seed?: number;
  frequency_penalty?: number;
  presence_penalty?: number;
  logit_bias?: Record<string, number>;
  logprobs?: boolean;
  top_logprobs?: number;
  response_format?: GenerateOptions["responseFormat"];
  n?: 1;
  signal?: AbortSignal;
  top_k?: number;
  min_p?: number;
  typical_p?: number;
  repetition_penalty?: number;
  context_policy?: "error" | "shift";
}

export interface ChatCompletionLogprobs {
  content: { token: string; logprob: number; bytes: number[]; top_logprobs: { token: string; logprob: number; bytes: number[] }[] }[];
  refusal: null;
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

/** Hearth's additions to a completion (ignored by OpenAI clients). */
export interface HearthExtras {
  /** Messages left out by context_policy "shift". */
  dropped_messages: number;
  timing: { prompt_ms: number; ttft_ms: number; decode_ms: number; tokens_per_second: number };
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: 0; message: { role: "assistant"; content: string | null; refusal: null; tool_calls?: ToolCall[] }; logprobs: ChatCompletionLogprobs | null; finish_reason: "stop" | "length" | "tool_calls" }[];
  usage: CompletionUsage;
  hearth: HearthExtras;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: {
    index: 0;
    delta: { role?: "assistant"; content?: string; tool_calls?: ({ index: number; id: string; type: "function"; function: { name: string; arguments: string } } | { index: number; function: { arguments: string } })[] };
    logprobs: ChatCompletionLogprobs | null;
    finish_reason: "stop" | "length" | "tool_calls" | null;
  }[];
  /** Only on the last chunk, with stream_options.include_usage (its choices are empty). */
  usage?: CompletionUsage;
  /** On the chunk with the finish_reason. */
  hearth?: HearthExtras;
}

export interface Completions {
  create(request: ChatCompletionRequest & { stream?: false }, options?: { signal?: AbortSignal }): Promise<ChatCompletion>;
  create(request: ChatCompletionRequest & { stream: true }, options?: { signal?: AbortSignal }): Promise<AsyncIterable<ChatCompletionChunk>>;
}

/** Bytes one backend needs for a model (see `Hearth.inspect`). */
export interface MemoryNeeds {
  weights: number;
  /** K and V for every layer and position of the context. */
  kvCache: number;
  /** Activations of a forward pass, logits. */
  scratch: number;
  /** The vocabulary and fixed overhead. */
  other: number;
  total: number;
}

/** What loading a model will need and whether this browser can hold it (bytes). */
export interface ModelInspection {
  name: string;
  displayName: string;
  architecture: string;
  /** The model's training context. */
  contextLength: number;
  /** The context the figures are for (the asked one, or min(model context, 2048)). */
  contextSize: number;
  kvType: "f16" | "q8_0" | "f32";
  kvBytesPerValue: number;
  fileBytes: number;
  headerBytes: number;
  splitCount: number;
  /** The CPU engine: all of it in the engine's (wasm) memory. */
  cpu: MemoryNeeds;
  /** The WebGPU engine: in GPU buffers. */
  webgpu: MemoryNeeds;
  /** The WebGPU engine: what stays in the engine's memory. */
  webgpuHeap: number;
  /** The largest buffer the WebGPU engine binds whole. */
  webgpuLargestBuffer: number;
  limits: {
    /** The engine's memory limit (4 GiB: wasm32). */
    wasmBytes: number;
    /** The memory64 engine's limit (16 GiB, at most navigator.deviceMemory), or null where the browser has no memory64. */
    wasm64Bytes: number | null;
    /** The build running now (the model already loaded is in it). */
    engine: "wasm32" | "wasm64";
    /** Held by the model already loaded in this engine. */
    wasmInUse: number;
    webgpu: { maxBufferSize: number; maxStorageBufferBindingSize: number; software: boolean } | null;
    /** navigator.deviceMemory, a hint (Chromium caps it at 8 GiB). */
    deviceMemoryBytes: number | null;
    storageQuotaBytes: number | null;
    storageFreeBytes: number | null;
  };
  fits: { cpu: boolean; webgpu: boolean };
  /** The build a CPU load would run on: "wasm32", "wasm64" (memory64: past wasm32's 4 GiB), or null if neither holds it. */
  cpuEngine: "wasm32" | "wasm64" | null;
  /** Hints in words (device memory, storage quota). */
  warnings: string[];
}

/** A LoRA adapter in use (`llm.adapters`). */
export interface AdapterInfo {
  /** Unique for the model's lifetime. */
  id: number;
  /** The adapter file's general.name ("" when it has none). */
  name: string;
  scale: number;
  /** adapter.lora.alpha (0: the deltas are scaled by `scale` alone, as llama.cpp). */
  alpha: number;
  rank: number;
  /** How many of the model's tensors it changes. */
  tensors: number;
}

/**
 * LoRA adapters in llama.cpp's GGUF adapter format (F32, F16, Q8_0, ... halves), several at once:
 * each matrix W becomes W x + Σ scale · alpha / rank · B (A x), as llama.cpp applies them; the base
 * weights are never modified. An adapter made for another model fails with HearthError
 * "adapter_mismatch" (the message names the tensor or "general.architecture"); a file that is no
 * LoRA adapter with "not_an_adapter". A change takes effect at the next request, which reads its
 * prompt again (the KV cache computed under other adapters is dropped). Calls wait for the
 * requests queued before them.
 */
export interface Adapters {
  load(source: string | URL | File | Blob | ArrayBuffer | Uint8Array, options?: { scale?: number; signal?: AbortSignal }): Promise<AdapterInfo>;
  /** A scale of 0 turns an adapter off without unloading it. */
  setScale(id: number, scale: number): Promise<AdapterInfo>;
  remove(id: number): Promise<true>;
  list(): Promise<AdapterInfo[]>;
}

export class Hearth {
  static load(source: ModelSource, options?: LoadOptions): Promise<Hearth>;
  /**
   * What loading `source` will need, from its GGUF header alone (a Range request for a URL: no
   * weight is downloaded); null when the header cannot be read whole. `load` runs the same check
   * and fails with HearthError "model_too_big" (saying what would fit) before the download.
   */
  static inspect(
    source: ModelSource,
    options?: { contextSize?: number; kvType?: "f16" | "q8_0" | "f32"; cache?: boolean; signal?: AbortSignal; worker?: boolean },
  ): Promise<ModelInspection | null>;
  static readonly models: ModelStoreApi;
  /** The loaded model's; replaced by a successful `load`. */
  readonly info: ModelInfo;
  /**
   * Load a model into this object's engine in place of the current one (`worker` and `threads`
   * stay as they were); waits for a generation in progress. A load that fails leaves the current
   * model as it was, except "engine_crashed" (the engine was restarted without a model): this is
   * how the model comes back after that.
   */
  load(source: ModelSource, options?: Omit<LoadOptions, "worker" | "threads">): Promise<ModelInfo>;
  generate(prompt: string | number[] | Uint32Array, options?: GenerateOptions): AsyncGenerator<Chunk, void, unknown>;
  /** Stream a reply to [{role, content}] with the model's chat template; `chat.completions.create` speaks OpenAI's shapes. */
  readonly chat: ((messages: ChatMessage[], options?: GenerateOptions) => AsyncGenerator<Chunk, void, unknown>) & { completions: Completions };
  /**
   * Embeddings as llama.cpp's embeddings mode computes them (the hidden states after the output
   * norm, pooled, unit length); every input is checked first (HearthError "context_overflow" for
   * one longer than the context, "invalid_argument" for an empty one).
   */
  embed(input: EmbedInput | EmbedInput[], options?: EmbedOptions): Promise<EmbedResult>;
  /** OpenAI's embeddings shapes: `embeddings.create({input})`. */
  readonly embeddings: Embeddings;
  /**
   * Llama Guard moderation of the last message of `conversation` (a text is one user message):
   * the model's Llama Guard template (else the built-in Llama Guard 3 1B one), the answer
   * constrained to "safe" or "unsafe" and category codes; the taxonomy stays in the KV cache.
   */
  moderate(conversation: string | ChatMessage[], options?: ModerateOptions): Promise<Moderation>;
  /** OpenAI's moderations shapes: `moderations.create({input})`. */
  readonly moderations: Moderations;
  /** The guard model of `Hearth.load(model, {guard})`, or null. */
  readonly guard: Hearth | null;
  /** Perplexity of `text` as llama.cpp's llama-perplexity measures it (HearthError "invalid_argument" when it is shorter than two chunks). */
  perplexity(text: string, options?: PerplexityOptions): Promise<PerplexityResult>;
  /** The prompt text the chat template makes of `messages`. */
  applyChatTemplate(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean; tools?: Tool[]; toolChoice?: ToolChoice }): Promise<string>;
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): Promise<number[]>;
  decode(ids: number[] | Uint32Array): Promise<string>;
  /** LoRA adapters of the loaded model (a new `load` starts without any). */
  readonly adapters: Adapters;
  /**
   * Save the conversation the engine has cached (its tokens and KV cache) under `name`, in OPFS
   * (Cache Storage where files are not writable), tied to the model file's SHA-256, the context
   * size and the KV cache type. The SHA-256 is `load`'s `sha256`, the model store's (`cache:
   * true`), or hashed from the File or bytes loaded; else HearthError "invalid_argument".
   */
  saveSession(name: string): Promise<SavedSession & { ms: number }>;
  /**
   * Put the conversation saved as `name` back in the engine's cache; the next chat that begins
   * with it continues with the unbroken session's tokens. "session_not_found", "session_mismatch"
   * (another model, context size or cache type) or "bad_session" leave the cache as it was.
   */
  restoreSession(name: string): Promise<{ name: string; tokens: number; bytes: number; ms: number }>;
  listSessions(): Promise<SavedSession[]>;
  deleteSession(name: string): Promise<boolean>;
  stats(): Promise<EngineStats>;
  unload(): Promise<void>;
}

/** A saved conversation's listing (`saveSession`, `listSessions`). */
export interface SavedSession {
  name: string;
  /** The model's display name when it was saved. */
  model: string | null;
  modelSha256: string;
  contextSize: number;
  kvType: "f16" | "q8_0" | "f32";
  /** Tokens in the saved cache. */
  tokens: number;
  bytes: number;
  /** ISO 8601. */
  savedAt: string;
}

export default Hearth;
