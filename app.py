"""The arena-preference demo (Gradio), as a Space or from a clone: `python app.py --model out/arena-minilm`."""

from arena_preference.demo import build_demo, default_model, main  # noqa: F401  (a Space's runtime imports these)

if __name__ == "__main__":
    main()
