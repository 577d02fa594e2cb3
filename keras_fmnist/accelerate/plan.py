"""What `accelerate` runs: a list of steps over numbered tensor slots, and the decisions
that explain it."""


class Decision:
    """What `accelerate` did to one layer (or a few run as one step): `what` runs, and why
    where something was left alone or not done in place."""

    def __init__(self, layers, what, why=""):
        self.layers = tuple(layers)
        self.what = what
        self.why = why

    def __str__(self):
        text = f"{' + '.join(self.layers)}: {self.what}"
        return f"{text} ({self.why})" if self.why else text

    def __repr__(self):
        return f"Decision({self})"


class Step:
    """One call of the plan: `run(x, training)` on the values of `in_slots` (a list when
    `as_list`, else the one value), stored in `out_slot`."""

    __slots__ = ("run", "in_slots", "as_list", "out_slot")

    def __init__(self, run, in_slots, as_list, out_slot):
        self.run = run
        self.in_slots = in_slots
        self.as_list = as_list
        self.out_slot = out_slot


class Plan:
    """The model's computation as steps over slots; `layers` are the layers it calls (their
    torch hooks send a call to the stock model), `preparations` what adopting the plan
    changes once (a kernel's memory layout)."""

    def __init__(self, steps, input_slots, output_slots, num_slots, layers, input_shapes,
                 preparations=()):
        self.steps = tuple(steps)
        self.input_slots = tuple(input_slots)
        self.output_slots = tuple(output_slots)
        self.num_slots = num_slots
        self.layers = tuple(layers)
        self.input_shapes = tuple(input_shapes)
        self.preparations = tuple(preparations)

    def prepare(self):
        for preparation in self.preparations:
            preparation()

    def run(self, inputs, training):
        values = [None] * self.num_slots
        for slot, x in zip(self.input_slots, inputs):
            values[slot] = x
        for step in self.steps:
            if step.as_list:
                x = [values[s] for s in step.in_slots]
            else:
                x = values[step.in_slots[0]]
            values[step.out_slot] = step.run(x, training)
        outputs = [values[s] for s in self.output_slots]
        return outputs[0] if len(outputs) == 1 else outputs
