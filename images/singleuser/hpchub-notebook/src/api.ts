// The server extension's endpoints (<base_url>hpchub/...): the browser never talks to the hub.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IAction {
  kind: 'warn' | 'save' | 'cull-warn';
  key: string;
  due_in: number;
  seconds: number;
}

export interface IExtendOffer {
  allowed: boolean;
  steps_seconds: number[];
  max_seconds_left: number | null;
  reason: string;
}

export interface IView {
  version: string;
  connected: boolean;
  hub_error: string | null;
  phase: string | null;
  message: string;
  ends_at: number | null;
  seconds_left: number | null;
  ends_by_signal: boolean;
  time_limit_seconds: number | null;
  extend: IExtendOffer | null;
  cull: { seconds_left: number; warn_in: number } | null;
  actions: IAction[];
}

export interface IDeath {
  kernel_id: string;
  at: number;
  seconds_ago: number;
  reason: 'oom' | 'killed' | 'exited';
  exit_code: number | null;
  limit_bytes: number | null;
  message: string;
}

/** An answer that is not 2xx: `message` is what the server (or the hub) said. */
export class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

export async function request<T>(
  path: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'hpchub', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (e) {
    throw new RequestError(0, `The notebook server could not be reached (${e}).`);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message =
      data && typeof data.message === 'string' && data.message
        ? data.message
        : `HTTP ${response.status}`;
    throw new RequestError(response.status, message);
  }
  return data as T;
}
