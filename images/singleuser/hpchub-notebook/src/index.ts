// hpchub in JupyterLab: the walltime countdown and warnings, saving open documents before
// the end, Extend, the cull warning, and kernels killed for memory named as such. All the
// timing rules are the server extension's (hpchub_notebook/schedule.py): this file polls
// its view and runs each planned action once.
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { IAction, IDeath, IView, RequestError, request } from './api';
import { clockAt, formatDuration, formatLeft } from './time';

const POLL_MS = 5000;
const TICK_MS = 1000;
const EXTEND = 'hpchub:extend';
const SAVE_ALL = 'hpchub:save-before-end';

class Walltime {
  constructor(
    private app: JupyterFrontEnd,
    private docManager: IDocumentManager
  ) {
    this.item = new Widget();
    this.item.id = 'hpchub-walltime';
    this.item.addClass('hpchub-walltime');
    this.item.node.addEventListener('click', () => {
      if (this.view?.extend?.allowed) {
        void app.commands.execute(EXTEND);
      }
    });
  }

  readonly item: Widget;
  /** The status bar shows the item only while an end time is known. */
  readonly activeChanged = new Signal<this, void>(this);
  private active = false;
  view: IView | null = null;
  private fetchedAt = 0; // Date.now() when `view` arrived
  private done = new Set<string>();
  private cullNote: string | null = null;

  /** Seconds left now, by the browser's clock from the server's figure. */
  secondsLeft(): number | null {
    if (!this.view || this.view.seconds_left === null) {
      return null;
    }
    return this.view.seconds_left - (Date.now() - this.fetchedAt) / 1000;
  }

  async poll(): Promise<void> {
    try {
      this.accept(await request<IView>('status'));
    } catch (e) {
      // The server extension missing or the server going away: keep the last view.
      console.debug('hpchub: status', e);
    }
  }

  accept(view: IView): void {
    this.view = view;
    this.fetchedAt = Date.now();
    this.app.commands.notifyCommandChanged(EXTEND);
    this.tick();
  }

  tick(): void {
    const left = this.secondsLeft();
    if ((left !== null) !== this.active) {
      this.active = left !== null;
      this.activeChanged.emit();
    }
    if (left !== null) {
      const text = `Time left ${formatLeft(left)}`;
      if (this.item.node.textContent !== text) {
        this.item.node.textContent = text;
      }
      this.item.toggleClass('hpchub-urgent', left <= 300);
      this.item.toggleClass('hpchub-warn', left > 300 && left <= 1800);
      const ext = this.view?.extend;
      this.item.toggleClass('hpchub-can-extend', !!ext?.allowed);
      this.item.node.title =
        `This server ends at ${clockAt(left)}` +
        (this.view?.ends_by_signal ? ' (the scheduler signalled its end)' : '') +
        (ext?.allowed
          ? '. Click to extend.'
          : ext?.reason
            ? `. ${ext.reason}`
            : '.');
    }
    this.runActions();
  }

  private runActions(): void {
    if (!this.view) {
      return;
    }
    const elapsed = (Date.now() - this.fetchedAt) / 1000;
    let cullDue: IAction | null = null;
    for (const a of this.view.actions) {
      const due = a.due_in - elapsed <= 0;
      if (a.kind === 'cull-warn') {
        cullDue = due ? a : null;
        continue;
      }
      if (!due || this.done.has(a.key)) {
        continue;
      }
      this.done.add(a.key);
      if (a.kind === 'warn') {
        this.warn();
      } else if (a.kind === 'save') {
        void this.app.commands.execute(SAVE_ALL);
      }
    }
    this.cullWarning(cullDue, elapsed);
  }

  private warn(): void {
    const left = this.secondsLeft() ?? 0;
    const save = this.view?.actions.find(a => a.kind === 'save');
    const actions = this.view?.extend?.allowed
      ? [
          {
            label: 'Extend…',
            callback: () => void this.app.commands.execute(EXTEND)
          }
        ]
      : [];
    Notification.warning(
      `This server ends in ${formatDuration(left)} (at ${clockAt(left)}). ` +
        (save
          ? `Open documents with unsaved changes will be saved ${formatDuration(save.seconds)} before the end.`
          : 'Save your work.'),
      { autoClose: false, actions }
    );
  }

  private cullWarning(due: IAction | null, elapsed: number): void {
    if (!due) {
      // Activity resumed (or culling is off): the warning no longer holds.
      if (this.cullNote) {
        Notification.dismiss(this.cullNote);
        this.cullNote = null;
      }
      return;
    }
    const inSeconds = Math.max(0, due.seconds - elapsed);
    const message =
      `This server has been idle and will be stopped in about ${formatDuration(inSeconds)}` +
      ' unless you use it (run a cell, open or save a file). Save your work.';
    if (this.cullNote && this.shownCullKey === due.key) {
      return;
    }
    if (this.cullNote) {
      Notification.update({ id: this.cullNote, message, type: 'warning' });
    } else {
      this.cullNote = Notification.warning(message, { autoClose: false });
    }
    this.shownCullKey = due.key;
  }
  private shownCullKey = '';

  /** Save every open document with unsaved changes; say which (and which failed). */
  async saveAll(): Promise<void> {
    const contexts = new Map<string, DocumentRegistry.Context>();
    for (const widget of this.app.shell.widgets('main')) {
      const context = this.docManager.contextForWidget(widget);
      if (context && context.model.dirty && !context.model.readOnly) {
        contexts.set(context.path, context);
      }
    }
    if (contexts.size === 0) {
      return;
    }
    const saved: string[] = [];
    const failed: string[] = [];
    await Promise.all(
      [...contexts.values()].map(async c => {
        try {
          await c.save();
          saved.push(c.path);
        } catch (e) {
          failed.push(`${c.path} (${e})`);
        }
      })
    );
    const left = this.secondsLeft();
    const when =
      left === null ? '' : ` The server ends in ${formatDuration(left)}.`;
    if (saved.length) {
      Notification.info(
        `Saved before the end of this server: ${saved.sort().join(', ')}.${when}`,
        { autoClose: false }
      );
    }
    if (failed.length) {
      Notification.error(
        `Could not save: ${failed.sort().join(', ')}. Save them elsewhere now.${when}`,
        { autoClose: false }
      );
    }
  }

  async extend(): Promise<void> {
    const offer = this.view?.extend;
    if (!offer?.allowed) {
      Notification.warning(
        offer?.reason || 'This server cannot be extended.',
        { autoClose: 10000 }
      );
      return;
    }
    // Steps that stay within the cap (both figures are from the same answer of the server).
    const leftAtFetch = this.view?.seconds_left ?? 0;
    const steps = offer.steps_seconds.filter(
      s =>
        offer.max_seconds_left === null ||
        leftAtFetch + s <= offer.max_seconds_left
    );
    const choices = steps.length ? steps : offer.steps_seconds;
    const result = await showDialog({
      title: 'Extend this server',
      body: `It ends at ${clockAt(this.secondsLeft() ?? 0)}. Add:`,
      buttons: [
        Dialog.cancelButton(),
        ...choices.map(s =>
          Dialog.okButton({ label: `+${formatDuration(s)}`, caption: `${s}` })
        )
      ]
    });
    if (!result.button.accept) {
      return;
    }
    const seconds = Number(result.button.caption);
    try {
      const view = await request<IView>('extend', {
        method: 'POST',
        body: JSON.stringify({ seconds })
      });
      this.accept(view);
      const left = this.secondsLeft();
      Notification.success(
        left === null
          ? 'Extended.'
          : `Extended: this server now ends at ${clockAt(left)} (in ${formatDuration(left)}).`,
        { autoClose: 10000 }
      );
    } catch (e) {
      const message = e instanceof RequestError ? e.message : String(e);
      Notification.error(`Not extended: ${message}`, { autoClose: false });
    }
  }
}

/** Kernels killed by the out-of-memory killer are named as such, not "died". */
class KernelDeaths {
  private shown = new Set<string>();

  watch(panel: NotebookPanel): void {
    panel.sessionContext.statusChanged.connect((ctx, status) => {
      if (status === 'autorestarting' || status === 'dead') {
        const id = ctx.session?.kernel?.id;
        if (id) {
          void this.explain(id, panel.context.path);
        }
      }
    });
  }

  private async explain(kernelId: string, path: string): Promise<void> {
    // The server records the death in the restarter's callback, which may run just after
    // the browser hears "autorestarting": ask a few times.
    for (let i = 0; i < 8; i++) {
      try {
        const d = await request<IDeath>(`kernels/${kernelId}/death`);
        if (d.seconds_ago < 120) {
          this.show(d, path);
          return;
        }
      } catch (e) {
        if (!(e instanceof RequestError) || e.status !== 404) {
          return;
        }
      }
      await new Promise(r => setTimeout(r, 1000));
    }
  }

  private show(d: IDeath, path: string): void {
    const key = `${d.kernel_id}:${d.at}`;
    if (this.shown.has(key)) {
      return;
    }
    this.shown.add(key);
    if (d.reason !== 'oom') {
      return; // Lab's own "appears to have died" says as much as we know
    }
    // Replace Lab's "Kernel Restarting ... appears to have died" dialog with the cause.
    Dialog.tracker.forEach(dialog => {
      if (dialog.node.textContent?.includes('appears to have died')) {
        dialog.reject();
      }
    });
    Notification.error(`${path}: ${d.message}`, { autoClose: false });
    void showDialog({
      title: 'Kernel ran out of memory',
      body: `${path}: ${d.message}`,
      buttons: [Dialog.okButton()]
    });
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'hpchub-notebook:plugin',
  description:
    'hpchub: time left, warnings, saving before the end, extend, cull warning, out-of-memory kernels.',
  autoStart: true,
  requires: [IDocumentManager],
  optional: [IStatusBar, ICommandPalette, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    docManager: IDocumentManager,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null
  ) => {
    const walltime = new Walltime(app, docManager);
    app.commands.addCommand(EXTEND, {
      label: 'Extend this server’s time…',
      isEnabled: () => !!walltime.view?.extend?.allowed,
      execute: () => walltime.extend()
    });
    app.commands.addCommand(SAVE_ALL, {
      label: 'Save all open documents with unsaved changes (before the server ends)',
      execute: () => walltime.saveAll()
    });
    palette?.addItem({ command: EXTEND, category: 'hpchub' });
    if (statusBar) {
      statusBar.registerStatusItem('hpchub-notebook:walltime', {
        item: walltime.item,
        align: 'left',
        rank: 0,
        isActive: () => walltime.secondsLeft() !== null,
        activeStateChanged: walltime.activeChanged
      });
    }
    const deaths = new KernelDeaths();
    notebooks?.widgetAdded.connect((_, panel) => deaths.watch(panel));
    notebooks?.forEach(panel => deaths.watch(panel));
    void walltime.poll();
    setInterval(() => void walltime.poll(), POLL_MS);
    setInterval(() => walltime.tick(), TICK_MS);
  }
};

export default plugin;
