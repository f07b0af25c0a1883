// alignkit studio: the few behaviours that need a script: creating a task, and labelling by keyboard.
"use strict";

async function postJSON(url, body) {
  const res = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                body: JSON.stringify(body)});
  const data = await res.json().catch(() => ({error: res.statusText}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function setupNewTask() {
  const status = document.getElementById("task-status");
  if (!status) return;
  const common = () => ({name: document.getElementById("task-name").value.trim(),
                         limit: document.getElementById("task-limit").value || null});
  const create = async (body) => {
    status.textContent = "creating…";
    try {
      const out = await postJSON("/api/tasks", body);
      status.textContent = `task ${out.task}: ${out.items} items`;
      window.location.href = out.url;
    } catch (e) { status.textContent = "error: " + e.message; }
  };
  document.getElementById("create-from-runs").addEventListener("click", () => {
    const runs = Array.from(document.querySelectorAll("input.pick:checked")).map(x => x.value);
    create({...common(), runs});
  });
  document.getElementById("create-from-prompts").addEventListener("click", () => {
    create({...common(), prompts: document.getElementById("task-prompts").value.trim(),
            model: document.getElementById("task-model").value.trim() || null,
            k: parseInt(document.getElementById("task-k").value || "2", 10)});
  });
}

function setupLabeller() {
  const box = document.getElementById("labeller");
  if (!box) return;
  const k = parseInt(box.dataset.k, 10);
  const status = document.getElementById("label-status");
  const critique = document.getElementById("critique");
  let busy = false;
  const send = async (answer) => {
    if (busy) return;
    busy = true;
    status.textContent = "saving…";
    try {
      await postJSON(`/api/tasks/${encodeURIComponent(box.dataset.task)}/answer`,
                     {annotator: box.dataset.annotator, item_id: parseInt(box.dataset.item, 10), answer,
                      critique: critique.value});
      status.textContent = "saved";
      window.location.reload();  // the server renders the next item
    } catch (e) { status.textContent = "error: " + e.message; busy = false; }
  };
  box.querySelectorAll("button[data-answer]").forEach(b => b.addEventListener("click", () => send(b.dataset.answer)));
  document.addEventListener("keydown", (ev) => {
    if (ev.target === critique) {
      if (ev.key === "Escape") critique.blur();
      return;  // typing a critique never answers
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key.toLowerCase();
    const letters = "abcdefghijklmnopqrstuvwxyz".slice(0, k);
    let answer = null;
    if (k <= 9 && /^[1-9]$/.test(key) && parseInt(key, 10) <= k) answer = letters[parseInt(key, 10) - 1].toUpperCase();
    else if (key.length === 1 && letters.includes(key) && !"tsxc".includes(key)) answer = key.toUpperCase();
    else if (key === "t") answer = "tie";
    else if (key === "x") answer = "both_bad";
    else if (key === "s") answer = "skip";
    else if (key === "c") { ev.preventDefault(); critique.focus(); return; }
    if (answer) { ev.preventDefault(); send(answer); }
  });
}

function setupPager() {
  document.querySelectorAll(".pager a[data-page]").forEach(a => a.addEventListener("click", (ev) => {
    ev.preventDefault();
    const url = new URL(window.location.href);
    url.searchParams.set("page_no", a.dataset.page);
    window.location.href = url.toString();
  }));
}

setupNewTask();
setupLabeller();
setupPager();
