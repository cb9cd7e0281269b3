distill.py --arch resnet20 --epochs 30 --batch-size 128 --amp bf16 --teacher runs/recipe/teacher/s0/model.pt --seed 1 
